//! Country of an address, from a local MaxMind database (GeoLite2/GeoIP2 Country or
//! City). Never a network lookup: without a configured database the admin simply shows
//! no countries.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

/// An open database.
pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
}

#[derive(Deserialize)]
struct Record {
    country: Option<Country>,
}

#[derive(Deserialize)]
struct Country {
    iso_code: Option<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
}

impl Geo {
    pub fn open(path: &Path) -> Result<Geo, String> {
        maxminddb::Reader::open_readfile(path)
            .map(|reader| Geo { reader })
            .map_err(|e| format!("GeoIP database {}: {e}", path.display()))
    }

    /// "Germany (DE)", or `None` when the database does not know the address.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let record: Record = self.reader.lookup(ip).ok()?.decode().ok()??;
        let c = record.country?;
        match (c.names.get("en"), c.iso_code) {
            (Some(name), Some(code)) => Some(format!("{name} ({code})")),
            (Some(name), None) => Some(name.clone()),
            (None, Some(code)) => Some(code),
            (None, None) => None,
        }
    }

    /// The country of a banned network (of its first address).
    pub fn country_of(&self, net: &IpNet) -> Option<String> {
        self.country(net.network())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geo {
        Geo::open(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo-test.mmdb")).unwrap()
    }

    #[test]
    fn countries_come_from_the_local_database() {
        let g = geo();
        assert_eq!(
            g.country("192.0.2.7".parse().unwrap()).as_deref(),
            Some("Germany (DE)")
        );
        assert_eq!(
            g.country("2001:db8::1".parse().unwrap()).as_deref(),
            Some("Japan (JP)")
        );
        assert_eq!(
            g.country_of(&"198.51.100.0/24".parse().unwrap()).as_deref(),
            Some("Brazil (BR)")
        );
        assert_eq!(g.country("10.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_missing_database_names_its_path() {
        let e = Geo::open(Path::new("/nonexistent/GeoLite2-Country.mmdb"))
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/GeoLite2-Country.mmdb"), "{e}");
    }
}
