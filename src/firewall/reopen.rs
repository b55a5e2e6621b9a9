//! A firewall that can be flushed while the daemon runs: `flush` removes everything
//! pyfilter put in the kernel (chain and jumps, sets, table), as the command promises,
//! and the structures are made again just before the next change, so the daemon goes on
//! banning without leaving an empty chain behind in the meantime.

use ipnet::IpNet;

use super::{Entry, Firewall, FirewallError};

pub struct Reopening {
    inner: Box<dyn Firewall>,
    /// Flushed since the last `init`: the structures are gone until the next change.
    flushed: bool,
}

impl Reopening {
    pub fn new(inner: Box<dyn Firewall>) -> Reopening {
        Reopening {
            inner,
            flushed: false,
        }
    }

    fn ready(&mut self) -> Result<(), FirewallError> {
        if self.flushed {
            self.init()?;
        }
        Ok(())
    }
}

impl Firewall for Reopening {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn init(&mut self) -> Result<(), FirewallError> {
        self.inner.init()?;
        self.flushed = false;
        Ok(())
    }
    fn restore(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        self.ready()?;
        self.inner.restore(bans)
    }
    fn ban(&mut self, bans: &[Entry]) -> Result<(), FirewallError> {
        self.ready()?;
        self.inner.ban(bans)
    }
    fn unban(&mut self, nets: &[IpNet]) -> Result<(), FirewallError> {
        // Nothing of pyfilter's is in the kernel after a flush: nothing to take out.
        if self.flushed {
            return Ok(());
        }
        self.inner.unban(nets)
    }
    fn flush(&mut self) -> Result<(), FirewallError> {
        self.inner.flush()?;
        self.flushed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the calls that reach the backend.
    #[derive(Default)]
    struct Calls(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);

    impl Firewall for Calls {
        fn name(&self) -> &'static str {
            "calls"
        }
        fn init(&mut self) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push("init");
            Ok(())
        }
        fn restore(&mut self, _: &[Entry]) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push("restore");
            Ok(())
        }
        fn ban(&mut self, _: &[Entry]) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push("ban");
            Ok(())
        }
        fn unban(&mut self, _: &[IpNet]) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push("unban");
            Ok(())
        }
        fn flush(&mut self) -> Result<(), FirewallError> {
            self.0.lock().unwrap().push("flush");
            Ok(())
        }
    }

    #[test]
    fn after_a_flush_the_structures_come_back_only_with_the_next_ban() {
        let calls = Calls::default();
        let seen = std::sync::Arc::clone(&calls.0);
        let mut fw = Reopening::new(Box::new(calls));
        fw.flush().unwrap();
        fw.unban(&["192.0.2.1/32".parse().unwrap()]).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["flush"], "nothing made again yet");
        fw.ban(&[]).unwrap();
        fw.ban(&[]).unwrap();
        assert_eq!(*seen.lock().unwrap(), ["flush", "init", "ban", "ban"]);
    }
}
