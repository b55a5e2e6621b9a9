//! Words for people: a count with its noun in the right number ("1 ban", "2 bans"), used
//! by every message that prints a count.

/// A number of things: the integer types counts come in.
pub trait Number: Copy {
    fn value(self) -> u64;
}

macro_rules! number {
    ($($t:ty),*) => {$(impl Number for $t {
        fn value(self) -> u64 {
            self as u64
        }
    })*};
}
number!(u8, u16, u32, u64, usize);

/// `n` and the noun that goes with it: `count(1, "ban", "bans")` is `1 ban`.
pub fn count(n: impl Number, one: &str, many: &str) -> String {
    let n = n.value();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `count` for the nouns whose plural only adds an s.
pub fn counted(n: impl Number, noun: &str) -> String {
    let n = n.value();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_zero_plural() {
        assert_eq!(counted(1u32, "ban"), "1 ban");
        assert_eq!(counted(0u32, "ban"), "0 bans");
        assert_eq!(counted(2u64, "pattern"), "2 patterns");
        assert_eq!(count(1u32, "address", "addresses"), "1 address");
        assert_eq!(count(3u32, "address", "addresses"), "3 addresses");
    }
}
