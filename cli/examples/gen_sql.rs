//! Writes a deterministic, pg_dump-like plain SQL dump of a given size to stdout, for the demo,
//! the tests and the benchmarks: `gen_sql 1GiB [SEED] > dump.sql`.
//!
//! The text mixes what real dumps hold (COPY rows with ids, timestamps, amounts, emails, free
//! text from a vocabulary) so that it compresses like one (about 3x with `gzip -9`).

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
}

const SYLLABLES: &[&str] = &[
    "ka", "ro", "mi", "zen", "to", "ria", "lu", "ne", "sa", "vi", "dor", "el", "an", "qu", "is",
    "ta", "mo", "ber", "gan", "fi", "ol", "pe", "ri", "sto", "ux", "ya", "ho", "lin", "mar", "cus",
];

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

    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut written = 0u64;
    let mut emit = |out: &mut BufWriter<_>, s: &str| -> std::io::Result<bool> {
        let remaining = size - written;
        let bytes = s.as_bytes();
        let n = bytes.len().min(remaining as usize);
        out.write_all(&bytes[..n])?;
        written += n as u64;
        Ok(written < size)
    };

    let header = "--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n\
                  SET standard_conforming_strings = on;\n\nCREATE TABLE public.orders (\n    id bigint NOT NULL,\n    \
                  customer text NOT NULL,\n    email text,\n    amount numeric(12,2),\n    created_at timestamp with time zone,\n    \
                  note text\n);\n\nCOPY public.orders (id, customer, email, amount, created_at, note) FROM stdin;\n";
    if !emit(&mut out, header)? {
        return out.flush();
    }
    let mut line = String::with_capacity(512);
    let mut id = 1u64;
    loop {
        line.clear();
        let w = |rng: &mut Rng| words[rng.below(words.len() as u64) as usize].as_str();
        let (first, last) = (w(&mut rng), w(&mut rng));
        let note_len = rng.below(12);
        let mut note = String::new();
        for i in 0..note_len {
            if i > 0 {
                note.push(' ');
            }
            note.push_str(w(&mut rng));
        }
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "{id}\t{first} {last}\t{first}.{last}@example.com\t{}.{:02}\t2026-{:02}-{:02} {:02}:{:02}:{:02}+00\t{}",
            rng.below(100_000),
            rng.below(100),
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60),
            if note.is_empty() { "\\N" } else { &note }
        );
        id += 1;
        if !emit(&mut out, &line)? {
            break;
        }
    }
    out.flush()
}
