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
