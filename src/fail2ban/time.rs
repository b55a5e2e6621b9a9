//! fail2ban's times (`bantime`, `findtime`, `bantime.maxtime`): seconds, or an arithmetic
//! expression of numbers with units, as fail2ban's `MyTime.str2seconds` reads them.
//!
//! `600`, `10m`, `1h30m`, `1d 2h` (terms side by side add up), `-1` (forever, for
//! `bantime`), `24*60*60`, `1.5h`, `2 weeks`. Units, case-insensitive: `s`, `ss`, `se`,
//! `sec`, `second(s)`; `m`, `mm`, `mi`, `min`, `minute(s)`; `h`, `hh`, `ho`, `hou`,
//! `hour(s)`; `d`, `dd`, `da`, `day(s)`; `w`, `ww`, `we`, `wee`, `week(s)`; `mo`, `mon`,
//! `month(s)` (a twelfth of 365.25 days); `y`, `yy`, `ye`, `yea`, `year(s)` (365.25 days).
//! fail2ban hands the rewritten text to Python's `eval`; this reads the same arithmetic
//! (`+ - * /`, parentheses) and nothing else.

const DAY: f64 = 86400.0;
const YEAR: f64 = (365.0 * 3.0 + 366.0) * DAY / 4.0;

/// The seconds a fail2ban time expression stands for.
pub fn seconds(text: &str) -> Result<f64, String> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, at: 0 };
    let value = p.sum()?;
    if p.at < p.tokens.len() {
        return Err(format!("`{text}`: unexpected `{}`", p.tokens[p.at].show()));
    }
    if !value.is_finite() {
        return Err(format!("`{text}` is not a finite time"));
    }
    Ok(value)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    /// A unit, as its length in seconds.
    Unit(f64),
    Op(char),
    /// Blank space between two terms: they add up (`1d 2h`).
    Gap,
}

impl Token {
    fn show(&self) -> String {
        match self {
            Token::Number(n) => n.to_string(),
            Token::Unit(_) => "unit".into(),
            Token::Op(c) => c.to_string(),
            Token::Gap => " ".into(),
        }
    }
}

fn unit(word: &str) -> Option<f64> {
    let w = word.to_ascii_lowercase();
    let is = |names: &[&str]| names.contains(&w.as_str());
    Some(if is(&["d", "dd", "da", "day", "days"]) {
        DAY
    } else if is(&["w", "ww", "we", "wee", "week", "weeks"]) {
        7.0 * DAY
    } else if is(&["mo", "mon", "month", "months"]) {
        YEAR / 12.0
    } else if is(&["y", "yy", "ye", "yea", "year", "years"]) {
        YEAR
    } else if is(&["s", "ss", "se", "sec", "second", "seconds"]) {
        1.0
    } else if is(&["m", "mm", "mi", "min", "minute", "minutes"]) {
        60.0
    } else if is(&["h", "hh", "ho", "hou", "hour", "hours"]) {
        3600.0
    } else {
        return None;
    })
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.trim().chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            out.push(Token::Gap);
        } else if c.is_ascii_digit() || c == '.' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let n = s
                .parse::<f64>()
                .map_err(|_| format!("`{text}`: `{s}` is not a number"))?;
            // `1d2h` is `1d 2h`, as fail2ban spaces a digit that follows a letter.
            if matches!(out.last(), Some(Token::Unit(_))) {
                out.push(Token::Gap);
            }
            out.push(Token::Number(n));
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            let w: String = chars[start..i].iter().collect();
            let len = unit(&w).ok_or_else(|| format!("`{text}`: `{w}` is not a time unit"))?;
            out.push(Token::Unit(len));
        } else if "+-*/()".contains(c) {
            out.push(Token::Op(c));
            i += 1;
        } else {
            return Err(format!("`{text}`: unexpected `{c}`"));
        }
    }
    // A gap only means "add" between a finished term and a number; elsewhere it is space.
    let mut kept = Vec::with_capacity(out.len());
    for (k, t) in out.iter().enumerate() {
        if *t == Token::Gap {
            let prev_ends_term = matches!(
                kept.last(),
                Some(Token::Number(_) | Token::Unit(_) | Token::Op(')'))
            );
            let next_is_number = matches!(out.get(k + 1), Some(Token::Number(_)));
            if prev_ends_term && next_is_number {
                kept.push(Token::Gap);
            }
        } else {
            kept.push(t.clone());
        }
    }
    Ok(kept)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        loop {
            match self.peek() {
                Some(Token::Op('+')) | Some(Token::Gap) => {
                    self.at += 1;
                    value += self.product()?;
                }
                Some(Token::Op('-')) => {
                    self.at += 1;
                    value -= self.product()?;
                }
                _ => return Ok(value),
            }
        }
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.factor()?;
        loop {
            match self.peek() {
                Some(Token::Op('*')) => {
                    self.at += 1;
                    value *= self.factor()?;
                }
                Some(Token::Op('/')) => {
                    self.at += 1;
                    let d = self.factor()?;
                    if d == 0.0 {
                        return Err("division by zero".into());
                    }
                    value /= d;
                }
                _ => return Ok(value),
            }
        }
    }

    fn factor(&mut self) -> Result<f64, String> {
        let token = self.peek().cloned();
        self.at += 1;
        let value = match token {
            Some(Token::Op('-')) => return Ok(-self.factor()?),
            Some(Token::Op('+')) => return self.factor(),
            Some(Token::Op('(')) => {
                let v = self.sum()?;
                if self.peek() != Some(&Token::Op(')')) {
                    return Err("`(` without its `)`".into());
                }
                self.at += 1;
                v
            }
            Some(Token::Number(n)) => n,
            Some(t) => return Err(format!("unexpected `{}`", t.show())),
            None => return Err("an empty time".into()),
        };
        // A unit right after a number multiplies it.
        if let Some(Token::Unit(len)) = self.peek() {
            let len = *len;
            self.at += 1;
            return Ok(value * len);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail2ban_time_forms() {
        for (text, secs) in [
            ("600", 600.0),
            ("10m", 600.0),
            ("1h", 3600.0),
            ("48h", 172_800.0),
            ("1w", 604_800.0),
            ("1d 2h", 93_600.0),
            ("1d2h30m", 95_400.0),
            ("1h 30m 15s", 5415.0),
            ("-1", -1.0),
            ("24*60*60", 86_400.0),
            ("1.5h", 5400.0),
            ("2 weeks", 1_209_600.0),
            ("5 min", 300.0),
            ("1mo", 2_629_800.0),
            ("1y", 31_557_600.0),
            ("3600 + 60", 3660.0),
            ("(1h - 10m) * 2", 6000.0),
            ("10 MIN", 600.0),
        ] {
            assert_eq!(seconds(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_time_is_refused() {
        for text in ["", "soon", "10 parsecs", "1d)", "(1d", "1;2", "1/0", "10ms"] {
            assert!(seconds(text).is_err(), "{text} should be refused");
        }
    }
}
