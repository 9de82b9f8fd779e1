#!/usr/bin/env bash
# `make fuzz`: fuzzes the parsers that read what a tier holds (member headers, `.idx`,
# `.meta.json`, config) for FUZZ_TIME seconds in all (default 600), shared equally among the
# targets, after building them (the build is not counted).
#
# With cargo-fuzz (installed from crates.io if missing) the targets in fuzz/fuzz_targets run under
# libFuzzer on the stable toolchain without a sanitizer (`-s none`: the code is safe Rust; what is
# looked for is a panic, an allocation out of proportion to the input, a hang). Each target starts
# from fuzz/seeds/<target> and keeps what it learns in fuzz/corpus/<target>; a failing input is
# saved in fuzz/artifacts/<target>/ and the run stops with an error.
#
# Without cargo-fuzz, the same properties run as the engine's property tests with a large
# PROPTEST_CASES, round after round (new random cases each round), until the time is up.
# FUZZ_WITH=proptest chooses that way even where cargo-fuzz works.
set -euo pipefail
cd "$(dirname "$0")"
total="${1:-${FUZZ_TIME:-600}}"
targets=(member_header block_index metadata config)

have_cargo_fuzz() {
    cargo fuzz --version >/dev/null 2>&1 && return 0
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >/dev/null 2>&1 && cargo fuzz --version >/dev/null 2>&1
}

if [[ "${FUZZ_WITH:-}" != proptest ]] && have_cargo_fuzz && cargo fuzz build -s none >build.log 2>&1; then
    per=$(( total / ${#targets[@]} ))
    (( per > 0 )) || per=1
    echo "fuzz: cargo-fuzz (libFuzzer, no sanitizer), ${per} s per target"
    for t in "${targets[@]}"; do
        mkdir -p "corpus/$t"
        log="fuzz-$t.log"
        # -rss_limit_mb: a parser holding hundreds of MiB on small inputs is a finding too.
        if ! cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
            -max_total_time="$per" -rss_limit_mb=512 -timeout=10 -max_len=65536 \
            -print_final_stats=1 >"$log" 2>&1; then
            tail -40 "$log"
            echo "fuzz: $t FAILED (input saved under fuzz/artifacts/$t, log fuzz/$log)" >&2
            exit 1
        fi
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
        echo "fuzz: $t: ${runs} inputs in ${per} s, ${cov}, corpus $(find "corpus/$t" -maxdepth 1 -type f | wc -l) files, no failure"
    done
else
    if [[ "${FUZZ_WITH:-}" == proptest ]]; then
        echo "fuzz: FUZZ_WITH=proptest: running the property tests for ${total} s" >&2
    else
        echo "fuzz: cargo-fuzz unavailable (see fuzz/build.log); running the property tests for ${total} s" >&2
    fi
    cd ..
    cargo test -p tierback-engine --lib --no-run >/dev/null 2>&1
    props=$(cargo test -q -p tierback-engine --lib properties -- --list 2>/dev/null | grep -c ': test$' || true)
    end=$(( $(date +%s) + total ))
    rounds=0
    cases="${PROPTEST_CASES:-5000}"
    while (( $(date +%s) < end )); do
        left=$(( end - $(date +%s) ))
        # A round that outlives the budget is stopped (exit 124), not failed.
        status=0
        PROPTEST_CASES="$cases" timeout "$left" cargo test -q -p tierback-engine --lib properties \
            >fuzz/proptest-round.log 2>&1 || status=$?
        if (( status != 0 && status != 124 )); then
            tail -60 fuzz/proptest-round.log
            echo "fuzz: a property failed in round $((rounds + 1))" >&2
            exit 1
        fi
        (( status == 124 )) || rounds=$((rounds + 1))
    done
    echo "fuzz: ${rounds} complete rounds of ${props} properties at ${cases} cases each, no failure"
fi
