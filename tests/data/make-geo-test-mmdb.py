#!/usr/bin/env python3
"""Writes tests/data/geo-test.mmdb: a tiny GeoLite2-Country-shaped database covering the
documentation networks, for the admin's country tests. Run once by hand (needs
`pip install mmdb-writer`); the output is committed, so tests need no Python."""
from mmdb_writer import MMDBWriter
from netaddr import IPSet

w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-Country",
               languages=["en"], description={"en": "pyfilter test data"})
for nets, code, name in [
    (["192.0.2.0/24"], "DE", "Germany"),
    (["198.51.100.0/24"], "BR", "Brazil"),
    (["203.0.113.0/24", "2001:db8::/32"], "JP", "Japan"),
]:
    w.insert_network(IPSet(nets), {"country": {"iso_code": code, "names": {"en": name}}})
w.to_db_file("tests/data/geo-test.mmdb")
