//! A seeded generator of span-labeled sentences (templates × fake values),
//! in Presidio's evaluator format, for accuracy runs and regression tests.
//! Values are generated to each format's rules (valid checksums, real
//! phone plans); a share of names are invented, so PERSON recall is not
//! just a measure of the gazetteer. Clean samples (no PII) measure false
//! positives on prose and code.

use crate::eval::{Sample, Span};
use crate::validate;

/// splitmix64: small, seeded, reproducible across platforms.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

const TEMPLATES: &[&str] = &[
    "My name is {PERSON} and my email is {EMAIL_ADDRESS}.",
    "Please call {PERSON} at {PHONE_NUMBER} before {DATE_TIME}.",
    "Card number {CREDIT_CARD} was declined for {PERSON}.",
    "Her social security number is {US_SSN}.",
    "Wire the refund to IBAN {IBAN_CODE} by {DATE_TIME}.",
    "The login came from {IP_ADDRESS} at {DATE_TIME}.",
    "{PERSON} moved from {LOCATION} to {LOCATION} last year.",
    "Ship it to {STREET_ADDRESS} and text {PHONE_NUMBER} on arrival.",
    "Hi {PERSON}, your appointment is on {DATE_TIME}.",
    "Contact: {PERSON} <{EMAIL_ADDRESS}>, tel. {PHONE_NUMBER}",
    "Patient {PERSON}, born {DATE_TIME}, lives in {LOCATION}.",
    "Dear {PERSON}, we received your payment from card {CREDIT_CARD}.",
    "SSN: {US_SSN}; name: {PERSON}; phone: {PHONE_NUMBER}",
    "{PERSON} works at {ORGANIZATION} in {LOCATION}.",
    "Visit {URL} or write to {EMAIL_ADDRESS} for help.",
    "The device with MAC {MAC_ADDRESS} got address {IP_ADDRESS}.",
    "Send 0.5 BTC to {CRYPTO} today.",
    "I am {PERSON}, you can reach me on {PHONE_NUMBER} or at {EMAIL_ADDRESS}.",
    "Transfer from account {IBAN_CODE} failed; {PERSON} was notified.",
    "Meeting with {PERSON} and {PERSON} in {LOCATION} on {DATE_TIME}.",
    "{PERSON}'s new address is {STREET_ADDRESS}.",
    "Server {IP_ADDRESS} rejected the request from {EMAIL_ADDRESS}.",
    "Use card {CREDIT_CARD}, expiry {DATE_TIME}, holder {PERSON}.",
    "Thanks {PERSON}! I'll see you in {LOCATION}.",
    "Forwarded by {PERSON} ({EMAIL_ADDRESS}) on {DATE_TIME}.",
    "Reported by Dr. {PERSON} of {ORGANIZATION}.",
    "NHS number {UK_NHS} belongs to {PERSON}.",
    "Her National Insurance number is {UK_NINO}.",
    "The routing number is {ABA_ROUTING_NUMBER} for the checking account.",
    "Ask {PERSON} about the order placed on {DATE_TIME} from {LOCATION}.",
];

const CLEAN: &[&str] = &[
    "The quarterly report shows revenue grew 12% while costs fell.",
    "Run cargo build --release and then copy target/release/app to /usr/local/bin.",
    "fn main() { let x = vec![1, 2, 3]; println!(\"{}\", x.len()); }",
    "The meeting moved to the large room on the third floor.",
    "Version 2.4.1 fixes a crash when the cache directory is missing.",
    "We will review the proposal and get back to you next week.",
    "Set timeout = 30 and retries = 5 in the configuration file.",
    "The model scored 0.87 on the validation set after 3 epochs.",
    "Please update the README with the new install steps.",
    "import numpy as np; arr = np.zeros((3, 4)); print(arr.shape)",
    "Total: 1,250 units shipped in 14 boxes of 90 each.",
    "The API returns 404 when the resource does not exist.",
    "See section 4.2 of the design document for details.",
    "Our team will present the results at the next all-hands.",
    "The function takes two arguments and returns their sum.",
    "May the new release bring fewer bugs than the last one.",
];

const INVENTED_PARTS: &[&str] = &[
    "ka", "lo", "vre", "ten", "mi", "sar", "dov", "quin", "ela", "bri", "tho", "nax", "ru", "pel",
    "ost", "yan",
];

fn name_list(data: &'static str) -> Vec<&'static str> {
    data.lines()
        .filter(|l| !l.is_empty() && !l.contains(' '))
        .collect()
}

fn invented(rng: &mut Rng) -> String {
    let n = 2 + rng.below(2);
    let s: String = (0..n).map(|_| *rng.pick(INVENTED_PARTS)).collect();
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

struct Pools {
    first: Vec<&'static str>,
    last: Vec<&'static str>,
    places: Vec<&'static str>,
}

fn person(rng: &mut Rng, p: &Pools) -> String {
    let first = if rng.below(5) == 0 {
        invented(rng)
    } else {
        rng.pick(&p.first).to_string()
    };
    let last = if rng.below(4) == 0 {
        invented(rng)
    } else {
        rng.pick(&p.last).to_string()
    };
    match rng.below(6) {
        0 => first,
        1 => format!("{first} {}. {last}", char::from(b'A' + rng.below(26) as u8)),
        _ => format!("{first} {last}"),
    }
}

fn luhn_complete(mut d: Vec<u8>) -> String {
    d.push(0);
    for c in 0..10 {
        *d.last_mut().unwrap_or(&mut 0) = c;
        if validate::luhn(&d) {
            break;
        }
    }
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

fn card(rng: &mut Rng) -> String {
    let (prefix, len): (&str, usize) = *rng.pick(&[
        ("4", 16),
        ("51", 16),
        ("55", 16),
        ("2221", 16),
        ("34", 15),
        ("37", 15),
        ("6011", 16),
        ("35", 16),
    ]);
    let mut d: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while d.len() < len - 1 {
        d.push(rng.below(10) as u8);
    }
    let s = luhn_complete(d);
    let sep = *rng.pick(&["", " ", "-"]);
    if len == 15 {
        format!("{}{sep}{}{sep}{}", &s[..4], &s[4..10], &s[10..])
    } else {
        s.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(sep)
    }
}

fn ssn(rng: &mut Rng) -> String {
    loop {
        let s = format!(
            "{:03}-{:02}-{:04}",
            1 + rng.below(899),
            1 + rng.below(99),
            1 + rng.below(9999)
        );
        if validate::us_ssn(&s) {
            return s;
        }
    }
}

fn iban(rng: &mut Rng) -> String {
    let (cc, body): (&str, String) = match rng.below(5) {
        0 => ("DE", rng.digits(18)),
        1 => (
            "GB",
            format!(
                "{}{}",
                ["NWBK", "BARC", "MIDL", "LOYD"][rng.below(4)],
                rng.digits(14)
            ),
        ),
        2 => ("FR", rng.digits(23)),
        3 => (
            "NL",
            format!(
                "{}{}",
                ["ABNA", "INGB", "RABO"][rng.below(3)],
                rng.digits(10)
            ),
        ),
        _ => ("ES", rng.digits(20)),
    };
    let compact = format!("{cc}{:02}{body}", validate::iban_check_digits(cc, &body));
    if rng.below(2) == 0 {
        compact
    } else {
        compact
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn phone(rng: &mut Rng) -> String {
    let area = format!(
        "{}{}",
        2 + rng.below(8),
        [rng.digits(1), rng.digits(1)].concat()
    );
    let exch = format!("{}{}", 2 + rng.below(8), rng.digits(2));
    let line = rng.digits(4);
    match rng.below(7) {
        0 => format!("({area}) {exch}-{line}"),
        1 => format!("{area}-{exch}-{line}"),
        2 => format!("{area}.{exch}.{line}"),
        3 => format!("+1-{area}-{exch}-{line}"),
        4 => format!("+44 20 7{} {}", rng.digits(3), rng.digits(4)),
        5 => format!("+49 30 {}", rng.digits(8)),
        _ => format!("{area}-{exch}-{line}x{}", rng.digits(3)),
    }
}

fn date(rng: &mut Rng) -> String {
    const MONTHS: &[&str] = &[
        "January",
        "February",
        "March",
        "April",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let (y, m, d) = (1950 + rng.below(75), 1 + rng.below(12), 1 + rng.below(28));
    match rng.below(6) {
        0 => format!("{y}-{m:02}-{d:02}"),
        1 => format!("{m:02}/{d:02}/{y}"),
        2 => format!("{} {d}, {y}", rng.pick(MONTHS)),
        3 => format!("{d} {} {y}", rng.pick(MONTHS)),
        4 => format!("{} {d}", rng.pick(MONTHS)),
        _ => format!(
            "{}:{:02} {}",
            1 + rng.below(12),
            rng.below(60),
            rng.pick(&["AM", "PM", "am", "pm"])
        ),
    }
}

fn nhs(rng: &mut Rng) -> String {
    loop {
        let d = rng.digits(9);
        for c in 0..10u8 {
            let s = format!("{} {} {}{}", &d[..3], &d[3..6], &d[6..], c);
            if validate::uk_nhs(&s) {
                return s;
            }
        }
    }
}

fn aba(rng: &mut Rng) -> String {
    loop {
        let s = format!("0{}{}", 1 + rng.below(9), rng.digits(7));
        if validate::aba_routing(&s) {
            return s;
        }
    }
}

fn btc(rng: &mut Rng) -> String {
    // Known-valid addresses from Bitcoin's documentation and test vectors.
    rng.pick(&[
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa",
    ])
    .to_string()
}

fn value(kind: &str, rng: &mut Rng, p: &Pools) -> String {
    let last = rng.pick(&p.last).to_lowercase();
    match kind {
        "PERSON" => person(rng, p),
        "EMAIL_ADDRESS" => format!(
            "{}{}@{}.{}",
            rng.pick(&p.first).to_lowercase(),
            [".", "_", ""][rng.below(3)].to_owned() + &last,
            rng.pick(&["example", "mail", "corp", "acme"]),
            rng.pick(&["com", "org", "net", "co.uk", "de", "io"])
        ),
        "PHONE_NUMBER" => phone(rng),
        "CREDIT_CARD" => card(rng),
        "US_SSN" => ssn(rng),
        "IBAN_CODE" => iban(rng),
        "IP_ADDRESS" => {
            if rng.below(4) == 0 {
                format!("2001:db8:{:x}::{:x}", rng.below(65536), rng.below(65536))
            } else {
                format!(
                    "{}.{}.{}.{}",
                    1 + rng.below(223),
                    rng.below(256),
                    rng.below(256),
                    1 + rng.below(254)
                )
            }
        }
        "DATE_TIME" => date(rng),
        "LOCATION" => rng.pick(&p.places).to_string(),
        "ORGANIZATION" => format!(
            "{} {}",
            rng.pick(&p.last),
            rng.pick(&["Inc", "LLC", "Ltd", "Group", "Corp"])
        ),
        "STREET_ADDRESS" => format!(
            "{} {} {}",
            1 + rng.below(9999),
            rng.pick(&p.last),
            rng.pick(&["Street", "Avenue", "Road", "Lane", "Drive", "Court", "Way"])
        ),
        "URL" => format!(
            "https://www.{last}.com/{}",
            rng.pick(&["account", "help", "orders/17", "login"])
        ),
        "MAC_ADDRESS" => (0..6)
            .map(|_| format!("{:02x}", rng.below(256)))
            .collect::<Vec<_>>()
            .join(":"),
        "CRYPTO" => btc(rng),
        "UK_NHS" => nhs(rng),
        "UK_NINO" => format!(
            "{}{} {} {} {} {}",
            rng.pick(&["A", "B", "C", "E", "H", "J"]),
            rng.pick(&["A", "B", "C", "E", "H"]),
            rng.digits(2),
            rng.digits(2),
            rng.digits(2),
            rng.pick(&["A", "B", "C", "D"])
        ),
        "ABA_ROUTING_NUMBER" => aba(rng),
        other => other.to_string(),
    }
}

/// `n` samples from `seed`; every `clean_every`th sample has no PII.
pub fn generate(seed: u64, n: usize, clean_every: usize) -> Vec<Sample> {
    let pools = Pools {
        first: name_list(include_str!("../data/first_names.txt")),
        last: name_list(include_str!("../data/last_names.txt")),
        places: include_str!("../data/locations.txt")
            .lines()
            .filter(|l| !l.is_empty())
            .collect(),
    };
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if clean_every > 0 && i % clean_every == clean_every - 1 {
            out.push(Sample {
                full_text: rng.pick(CLEAN).to_string(),
                spans: Vec::new(),
            });
            continue;
        }
        let template = *rng.pick(TEMPLATES);
        let mut text = String::new();
        let mut spans = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let kind = &rest[open + 1..close];
            let v = value(kind, &mut rng, &pools);
            let start = text.chars().count();
            text.push_str(&v);
            spans.push(Span {
                entity_type: kind.to_string(),
                entity_value: Some(v.clone()),
                start_position: start,
                end_position: start + v.chars().count(),
            });
            rest = &rest[(close + 1).min(rest.len())..];
        }
        text.push_str(rest);
        out.push(Sample {
            full_text: text,
            spans,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_consistent() {
        let a = generate(7, 50, 5);
        assert_eq!(a, generate(7, 50, 5));
        assert_ne!(a, generate(8, 50, 5));
        for s in &a {
            for sp in &s.spans {
                let v: String = s
                    .full_text
                    .chars()
                    .skip(sp.start_position)
                    .take(sp.end_position - sp.start_position)
                    .collect();
                assert_eq!(Some(&v), sp.entity_value.as_ref());
            }
        }
        assert_eq!(a.iter().filter(|s| s.spans.is_empty()).count(), 10);
    }
}
