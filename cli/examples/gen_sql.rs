//! Writes a deterministic, pg_dump-like plain SQL dump of a given size to stdout, for the demo
//! and the benchmarks: `gen_sql 1GiB [SEED] > dump.sql`.
//!
//! It imitates a shop database dumped by `pg_dump`: a `customers` table, then an `orders` table
//! in insertion order (ids and timestamps ascending, repeat customers, a few order states, amounts
//! and free-text notes). Words, customers and amounts follow skewed (Zipf-like) distributions, as
//! real data does; uniformly random fields would make text that no real dump resembles (it
//! compresses and decompresses differently: `gzip -9` runs at half its usual speed on it).

use std::fmt::Write as _;
use std::io::{BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: fast, deterministic, good enough for test data.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index below `n`, small ones far more likely (log-uniform, i.e. Zipf with s = 1).
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "ro", "mi", "zen", "to", "ria", "lu", "ne", "sa", "vi", "dor", "el", "an", "qu", "is",
    "ta", "mo", "ber", "gan", "fi", "ol", "pe", "ri", "sto", "ux", "ya", "ho", "lin", "mar", "cus",
];
const STATES: &[&str] = &[
    "delivered",
    "shipped",
    "paid",
    "pending",
    "refunded",
    "cancelled",
];
const CUSTOMERS: usize = 50_000;

fn parse_size(s: &str) -> u64 {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .expect("size like 1GiB, 200MiB or 1048576");
    n * match &s[split..] {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => panic!("unknown unit {other}"),
    }
}

/// `YYYY-MM-DD HH:MM:SS+00` of seconds since 1970 (UTC).
fn timestamp(out: &mut String, secs: i64) {
    let t = time::OffsetDateTime::from_unix_timestamp(secs).expect("timestamp in range");
    let _ = write!(
        out,
        "{}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
}

/// Writes until `size` bytes, cutting the last line short like a truncated dump would be.
struct Sized<W: Write> {
    out: W,
    left: u64,
}

impl<W: Write> Sized<W> {
    /// Returns false once the size is reached.
    fn emit(&mut self, s: &str) -> std::io::Result<bool> {
        let n = s.len().min(self.left as usize);
        self.out.write_all(&s.as_bytes()[..n])?;
        self.left -= n as u64;
        Ok(self.left > 0)
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size = parse_size(args.get(1).map(String::as_str).unwrap_or("10MiB"));
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(42);
    let mut rng = Rng(seed.max(1) ^ 0x9E37_79B9_7F4A_7C15);
    let words: Vec<String> = (0..4000)
        .map(|_| {
            let n = 1 + rng.below(3);
            (0..n)
                .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
                .collect()
        })
        .collect();
    let customers: Vec<(String, String)> = (0..CUSTOMERS)
        .map(|_| {
            let first = words[rng.skewed(words.len())].clone();
            let last = words[rng.skewed(words.len())].clone();
            (first, last)
        })
        .collect();

    let stdout = std::io::stdout();
    let mut out = Sized {
        out: BufWriter::with_capacity(1 << 20, stdout.lock()),
        left: size,
    };
    let header = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
                  SET standard_conforming_strings = on;\n\nCREATE TABLE public.customers (\n    id bigint NOT NULL,\n    \
                  name text NOT NULL,\n    email text,\n    created_at timestamp with time zone\n);\n\n\
                  CREATE TABLE public.orders (\n    id bigint NOT NULL,\n    customer_id bigint NOT NULL,\n    \
                  customer text NOT NULL,\n    email text,\n    state text NOT NULL,\n    amount numeric(12,2),\n    \
                  created_at timestamp with time zone,\n    note text\n);\n\n\
                  COPY public.customers (id, name, email, created_at) FROM stdin;\n";
    if !out.emit(header)? {
        return out.out.flush();
    }
    let mut line = String::with_capacity(512);
    let mut clock: i64 = 1_735_689_600; // 2025-01-01
    for (i, (first, last)) in customers.iter().enumerate() {
        line.clear();
        clock += rng.below(600) as i64;
        let _ = write!(
            line,
            "{}\t{first} {last}\t{first}.{last}{}@example.com\t",
            i + 1,
            i % 97
        );
        timestamp(&mut line, clock);
        line.push('\n');
        if !out.emit(&line)? {
            return out.out.flush();
        }
    }
    if !out.emit("\\.\n\n\nCOPY public.orders (id, customer_id, customer, email, state, amount, created_at, note) FROM stdin;\n")? {
        return out.out.flush();
    }
    let mut id = 1u64;
    loop {
        line.clear();
        let c = rng.skewed(CUSTOMERS);
        let (first, last) = &customers[c];
        clock += rng.below(30) as i64;
        let amount = rng.skewed(100_000) as u64 + rng.below(100);
        let _ = write!(
            line,
            "{id}\t{}\t{first} {last}\t{first}.{last}{}@example.com\t{}\t{}.{:02}\t",
            c + 1,
            c % 97,
            STATES[rng.skewed(STATES.len())],
            amount,
            if rng.below(3) == 0 { 0 } else { rng.below(100) },
        );
        timestamp(&mut line, clock);
        line.push('\t');
        let note_words = rng.below(12);
        if note_words < 4 {
            line.push_str("\\N");
        }
        for i in 0..note_words.saturating_sub(3) {
            if i > 0 {
                line.push(' ');
            }
            line.push_str(&words[rng.skewed(words.len())]);
        }
        line.push('\n');
        id += 1;
        if !out.emit(&line)? {
            return out.out.flush();
        }
    }
}
