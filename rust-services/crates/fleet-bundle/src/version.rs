//! Comparing OS versions (`VERSION_ID`): dot/dash separated parts, numbers compared as numbers,
//! other parts as text; a version that extends another is newer (`2.1` < `2.1.1`,
//! `e2e.1` < `e2e.1.update`).

use std::cmp::Ordering;

pub fn compare(a: &str, b: &str) -> Ordering {
    let parts =
        |v: &str| -> Vec<String> { v.split(['.', '-', '+', '_']).map(str::to_string).collect() };
    let (pa, pb) = (parts(a), parts(b));
    for (x, y) in pa.iter().zip(&pb) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    pa.len().cmp(&pb.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers_and_extensions_are_newer() {
        assert_eq!(compare("2.10", "2.9"), Ordering::Greater);
        assert_eq!(compare("2.1", "2.1.1"), Ordering::Less);
        assert_eq!(compare("e2e.1", "e2e.1.update"), Ordering::Less);
        assert_eq!(compare("1.0", "1.0"), Ordering::Equal);
        assert_eq!(compare("5.0.0-rc1", "5.0.0-rc2"), Ordering::Less);
    }
}
