//! Checksums and structural checks that turn a pattern match into a confident
//! finding: Luhn, IBAN mod-97, ABA routing, NHS mod-11, SSN ranges, Bitcoin
//! Base58Check and Bech32. Each takes the matched text and never panics.

use sha2::{Digest, Sha256};

/// Digits of `s`, ignoring everything else (separators).
pub fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// A NANP number's ten digits: area code and exchange both start 2–9, area
/// codes with a middle 9 are reserved, and N11 codes are service codes.
pub fn nanp(d: &[u8]) -> bool {
    if d.len() != 10 {
        return false;
    }
    let n11 = |x: &[u8]| x[1] == 1 && x[2] == 1;
    (2..=9).contains(&d[0])
        && d[1] != 9
        && !n11(&d[0..3])
        && (2..=9).contains(&d[3])
        && !n11(&d[3..6])
}

/// Luhn (mod 10) check used by payment cards.
pub fn luhn(d: &[u8]) -> bool {
    if d.len() < 2 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &x) in d.iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// A payment card number: 13–19 digits, a known issuer prefix, Luhn.
pub fn credit_card(s: &str) -> bool {
    let d = digits(s);
    if !(13..=19).contains(&d.len()) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let prefix = |n: usize| d[..n].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let known = match d[0] {
        4 => true,                                                                     // Visa
        2 => (2221..=2720).contains(&prefix(4)) || prefix(4) == 2131 && d.len() == 15, // Mastercard, JCB
        5 => (50..=55).contains(&prefix(2)) || prefix(2) >= 56, // Mastercard, Maestro
        3 => matches!(prefix(2), 30 | 34 | 35 | 36 | 37 | 38 | 39), // Amex, Diners, JCB
        6 => true,                                              // Discover, UnionPay, Maestro
        1 => d.len() == 15,                                     // UATP, JCB 1800
        _ => false,
    };
    known && luhn(&d)
}

/// A 12-digit Maestro card number (prefix 50 or 56–69, Luhn): too short for
/// [`credit_card`], and a card only where the text says so.
pub fn maestro_12(s: &str) -> bool {
    let d = digits(s);
    d.len() == 12
        && (d[0] == 5 && (d[1] == 0 || d[1] >= 6) || d[0] == 6)
        && !d.iter().all(|&x| x == d[0])
        && luhn(&d)
}

/// US Social Security Number ranges: area 000, 666 and 900–999, group 00 and
/// serial 0000 were never issued; a few numbers are famous samples.
pub fn us_ssn(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let n = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let (area, group, serial) = (n(0..3), n(3..5), n(5..9));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    let whole = n(0..9);
    !matches!(whole, 123_456_789 | 78_051_120 | 219_099_999)
}

/// US ITIN: 9XX-GG-SSSS with the group in the IRS's issued ranges.
pub fn us_itin(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 || d[0] != 9 {
        return false;
    }
    let group = u32::from(d[3]) * 10 + u32::from(d[4]);
    matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99)
}

/// ABA routing transit number: weights 3, 7, 1 sum to a multiple of 10, and
/// the first two digits are a Federal Reserve routing symbol.
pub fn aba_routing(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 9 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let head = u32::from(d[0]) * 10 + u32::from(d[1]);
    if !matches!(head, 0..=12 | 21..=32 | 61..=72 | 80) {
        return false;
    }
    let w = [3u32, 7, 1];
    let sum: u32 = d
        .iter()
        .enumerate()
        .map(|(i, &x)| w[i % 3] * u32::from(x))
        .sum();
    sum % 10 == 0
}

/// UK NHS number: ten digits, mod-11 check digit.
pub fn uk_nhs(s: &str) -> bool {
    let d = digits(s);
    if d.len() != 10 || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let sum: u32 = d[..9]
        .iter()
        .enumerate()
        .map(|(i, &x)| (10 - i as u32) * u32::from(x))
        .sum();
    let check = 11 - (sum % 11);
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == u32::from(d[9])
}

/// UK National Insurance number prefix rules (HMRC): neither letter D, F, I,
/// Q, U or V; second letter not O; some pairs never allocated.
pub fn uk_nino(s: &str) -> bool {
    let c: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| b.to_ascii_uppercase())
        .collect();
    if c.len() != 9 {
        return false;
    }
    let (a, b) = (c[0], c[1]);
    let bad = |x: u8| b"DFIQUV".contains(&x);
    if bad(a) || bad(b) || b == b'O' {
        return false;
    }
    if matches!(
        &c[..2],
        b"BG" | b"GB" | b"NK" | b"KN" | b"TN" | b"NT" | b"ZZ"
    ) {
        return false;
    }
    c[2..8].iter().all(u8::is_ascii_digit) && matches!(c[8], b'A'..=b'D')
}

/// IBAN length per country (ISO 13616 registry), for the mod-97 check.
fn iban_length(country: &[u8]) -> Option<usize> {
    const TABLE: &[(&str, usize)] = &[
        ("AD", 24),
        ("AE", 23),
        ("AL", 28),
        ("AT", 20),
        ("AZ", 28),
        ("BA", 20),
        ("BE", 16),
        ("BG", 22),
        ("BH", 22),
        ("BI", 27),
        ("BR", 29),
        ("BY", 28),
        ("CH", 21),
        ("CR", 22),
        ("CY", 28),
        ("CZ", 24),
        ("DE", 22),
        ("DJ", 27),
        ("DK", 18),
        ("DO", 28),
        ("EE", 20),
        ("EG", 29),
        ("ES", 24),
        ("FI", 18),
        ("FK", 18),
        ("FO", 18),
        ("FR", 27),
        ("GB", 22),
        ("GE", 22),
        ("GI", 23),
        ("GL", 18),
        ("GR", 27),
        ("GT", 28),
        ("HR", 21),
        ("HU", 28),
        ("IE", 22),
        ("IL", 23),
        ("IQ", 23),
        ("IS", 26),
        ("IT", 27),
        ("JO", 30),
        ("KW", 30),
        ("KZ", 20),
        ("LB", 28),
        ("LC", 32),
        ("LI", 21),
        ("LT", 20),
        ("LU", 20),
        ("LV", 21),
        ("LY", 25),
        ("MC", 27),
        ("MD", 24),
        ("ME", 22),
        ("MK", 19),
        ("MN", 20),
        ("MR", 27),
        ("MT", 31),
        ("MU", 30),
        ("NI", 28),
        ("NL", 18),
        ("NO", 15),
        ("OM", 23),
        ("PK", 24),
        ("PL", 28),
        ("PS", 29),
        ("PT", 25),
        ("QA", 29),
        ("RO", 24),
        ("RS", 22),
        ("RU", 33),
        ("SA", 24),
        ("SC", 31),
        ("SD", 18),
        ("SE", 24),
        ("SI", 19),
        ("SK", 24),
        ("SM", 27),
        ("SO", 23),
        ("ST", 25),
        ("SV", 28),
        ("TL", 23),
        ("TN", 24),
        ("TR", 26),
        ("UA", 29),
        ("VA", 22),
        ("VG", 24),
        ("XK", 20),
        ("YE", 30),
    ];
    TABLE
        .iter()
        .find(|(c, _)| c.as_bytes() == country)
        .map(|&(_, n)| n)
}

/// The IBAN that starts `s` (spaces allowed between groups), if its country
/// length and mod-97 check hold. Returns the byte length of the IBAN in `s`,
/// so trailing words the pattern swallowed are not part of the finding.
pub fn iban_prefix(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    if bytes.len() < 4 {
        return None;
    }
    let country = [bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()];
    let want = iban_length(&country)?;
    let mut compact = Vec::with_capacity(want);
    let mut end = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if compact.len() == want {
            break;
        }
        if b == b' ' || b == b'-' {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return None;
        }
        compact.push(b.to_ascii_uppercase());
        end = i + 1;
    }
    if compact.len() != want || !compact[2..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // An IBAN must not run on into more alphanumerics.
    if bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let rearranged = compact[4..].iter().chain(&compact[..4]).copied();
    (mod97(rearranged) == 1).then_some(end)
}

/// ISO 7064 mod-97 of upper-case alphanumerics, letters counting A=10…Z=35.
pub fn mod97(chars: impl IntoIterator<Item = u8>) -> u32 {
    let mut rem = 0u32;
    for b in chars {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b.to_ascii_uppercase().wrapping_sub(b'A')) + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem
}

/// The two check digits of an IBAN for `country` and `bban`.
pub fn iban_check_digits(country: &str, bban: &str) -> u32 {
    98 - mod97(bban.bytes().chain(country.bytes()).chain(*b"00"))
}

const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Bitcoin legacy (P2PKH/P2SH) address: Base58Check with a double SHA-256.
pub fn btc_base58(s: &str) -> bool {
    let mut num: Vec<u8> = Vec::with_capacity(25);
    for c in s.bytes() {
        let Some(v) = BASE58.iter().position(|&x| x == c) else {
            return false;
        };
        let mut carry = v as u32;
        for byte in num.iter_mut().rev() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            num.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|&c| c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend_from_slice(&num);
    if full.len() != 25 || !matches!(full[0], 0x00 | 0x05) {
        return false;
    }
    let hash = Sha256::digest(Sha256::digest(&full[..21]));
    hash[..4] == full[21..]
}

/// Bitcoin SegWit address: Bech32 (v0) or Bech32m (v1+) checksum, `bc1` HRP.
pub fn btc_bech32(s: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let lower = s.to_ascii_lowercase();
    if lower != s && s.to_ascii_uppercase() != s {
        return false;
    }
    let Some(data) = lower.strip_prefix("bc1") else {
        return false;
    };
    if !(8..=87).contains(&data.len()) {
        return false;
    }
    let mut values = Vec::with_capacity(data.len());
    for c in data.bytes() {
        let Some(v) = CHARSET.iter().position(|&x| x == c) else {
            return false;
        };
        values.push(v as u32);
    }
    let polymod = |vals: &[u32]| {
        const GEN: [u32; 5] = [
            0x3b6a_57b2,
            0x2650_8e6d,
            0x1ea1_19fa,
            0x3d42_33dd,
            0x2a14_62b3,
        ];
        let mut chk = 1u32;
        for &v in vals {
            let top = chk >> 25;
            chk = ((chk & 0x01ff_ffff) << 5) ^ v;
            for (i, g) in GEN.iter().enumerate() {
                if (top >> i) & 1 == 1 {
                    chk ^= g;
                }
            }
        }
        chk
    };
    let mut all = vec![3, 3, 0, 2, 3]; // "bc" expanded: high bits, 0, low bits
    all.extend_from_slice(&values);
    let c = polymod(&all);
    match values.first() {
        Some(0) => c == 1,
        Some(_) => c == 0x2bc8_30a3,
        None => false,
    }
}

/// A dotted-quad IPv4 address with every octet in range and no leading zeros
/// that would make it octal-ambiguous.
pub fn ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

/// An IPv6 address in any of RFC 4291's textual forms.
pub fn ipv6(s: &str) -> bool {
    s.contains(':') && s.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers() {
        assert!(credit_card("4111 1111 1111 1111"));
        assert!(credit_card("5555-5555-5555-4444"));
        assert!(credit_card("378282246310005"));
        assert!(credit_card("6011111111111117"));
        assert!(!credit_card("4111 1111 1111 1112"));
        assert!(!credit_card("0000000000000000"));
        assert!(!credit_card("1234"));
    }

    #[test]
    fn ssn_itin_aba_nhs() {
        assert!(us_ssn("536-90-4399"));
        assert!(!us_ssn("666-12-3456"));
        assert!(!us_ssn("912-12-3456"));
        assert!(!us_ssn("123-00-4567"));
        assert!(!us_ssn("123-45-0000"));
        assert!(!us_ssn("123-45-6789"));
        assert!(us_itin("912-70-1234"));
        assert!(!us_itin("912-93-1234"));
        assert!(aba_routing("011000015"));
        assert!(aba_routing("021000021"));
        assert!(!aba_routing("021000022"));
        assert!(uk_nhs("943 476 5919"));
        assert!(!uk_nhs("943 476 5918"));
        assert!(uk_nino("AB 12 34 56 C"));
        assert!(!uk_nino("GB123456A"));
        assert!(!uk_nino("QQ123456A"));
    }

    #[test]
    fn iban() {
        assert_eq!(iban_prefix("DE89 3704 0044 0532 0130 00"), Some(27));
        assert_eq!(iban_prefix("GB82WEST12345698765432 today"), Some(22));
        assert_eq!(iban_prefix("GB82 WEST 1234 5698 7654 32 IBAN"), Some(27));
        assert_eq!(iban_prefix("GB82WEST12345698765433"), None);
        assert_eq!(iban_prefix("XX82WEST12345698765432"), None);
        assert_eq!(iban_prefix("DE89"), None);
    }

    #[test]
    fn bitcoin() {
        assert!(btc_base58("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"));
        assert!(btc_base58("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"));
        assert!(!btc_base58("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3"));
        assert!(btc_bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"));
        assert!(btc_bech32(
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297"
        ));
        assert!(!btc_bech32("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdx"));
    }

    #[test]
    fn ip() {
        assert!(ipv4("192.168.1.10"));
        assert!(!ipv4("256.1.1.1"));
        assert!(ipv6("2001:db8::ff00:42:8329"));
        assert!(ipv6("::1"));
        assert!(!ipv6("00:1a:2b:3c:4d:5e"));
    }
}
