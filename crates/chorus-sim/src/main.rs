//! `chorus-sim`: runs seeds of the simulator and prints what each strategy did.
//!
//! ```text
//! chorus-sim --strategy all --seeds 10000      # the table in docs/strategies.md
//! chorus-sim --strategy sequenced --seed 42    # one run, in detail
//! chorus-sim --seed 42 --faults 0,3            # a shrunk replay: only those faults
//! ```
//!
//! Exit status: 0 when every run kept every invariant, 1 when one did not (its seed,
//! the faults left after shrinking and the command that replays it are printed), 2 for
//! bad arguments.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use chorus_sim::{Config, Faults, Outcome, Stats, Strategy, run, shrink};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "chorus-sim",
    version,
    about = "Deterministic simulator of Chorus multi-device strategies"
)]
struct Args {
    /// The strategy: sequenced, leaderless, leader, primary, per-device, or all.
    #[arg(long, default_value = "sequenced", value_parser = parse_strategies)]
    strategy: Strategies,
    /// How many seeds to run per strategy (from --start).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Run this one seed and print it in detail.
    #[arg(long)]
    seed: Option<u64>,
    /// Replay only these scheduled faults (indices, comma-separated; as a shrunk
    /// failure prints them). Needs --seed.
    #[arg(long, requires = "seed", value_parser = parse_faults)]
    faults: Option<FaultList>,
    /// No faults at all: a perfect network and devices that never crash.
    #[arg(long)]
    calm: bool,
}

/// The scheduled faults `--faults` keeps.
#[derive(Clone, Debug)]
struct FaultList(BTreeSet<usize>);

fn parse_faults(s: &str) -> Result<FaultList, String> {
    if s == "none" {
        return Ok(FaultList(BTreeSet::new()));
    }
    s.split(',')
        .map(|i| {
            i.trim()
                .parse()
                .map_err(|_| format!("{i:?} is not a fault index (a list like 0,3, or none)"))
        })
        .collect::<Result<_, _>>()
        .map(FaultList)
}

/// The strategies `--strategy` names.
#[derive(Clone, Debug)]
struct Strategies(Vec<Strategy>);

fn parse_strategies(s: &str) -> Result<Strategies, String> {
    if s == "all" {
        return Ok(Strategies(Strategy::ALL.to_vec()));
    }
    Strategy::parse(s)
        .map(|x| Strategies(vec![x]))
        .ok_or_else(|| {
            format!(
                "unknown strategy {s:?} (sequenced, leaderless, leader, primary, per-device, all)"
            )
        })
}

fn config(strategy: Strategy, seed: u64, args: &Args) -> Config {
    let mut c = Config::for_seed(strategy, seed);
    if args.calm {
        c.faults = Faults::none();
    }
    c.keep = args.faults.as_ref().map(|f| f.0.clone());
    c
}

fn main() -> ExitCode {
    let args = Args::parse();
    let strategies: BTreeSet<Strategy> = args.strategy.0.iter().copied().collect();
    if let Some(seed) = args.seed {
        let mut failed = false;
        for &s in &strategies {
            failed |= !one(s, seed, &args);
        }
        return if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        };
    }
    println!(
        "{} seeds per strategy from {}, {} faults",
        args.seeds,
        args.start,
        if args.calm { "no" } else { "hostile" }
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut failure = None;
    let mut failing = Vec::new();
    for &s in &strategies {
        let started = Instant::now();
        let mut total = Totals::default();
        for seed in args.start..args.start.saturating_add(args.seeds) {
            let c = config(s, seed, &args);
            match run(&c, seed) {
                Ok(o) => {
                    if !o.passed() {
                        failure.get_or_insert((s, seed));
                        failing.push((s, seed));
                    }
                    total.add(&o);
                }
                Err(e) => {
                    eprintln!("chorus-sim: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        if total.s.mismatches > 0 {
            notes.push(format!(
                "{s}: {} posts of copies refused for a changed device set, each planned again",
                total.s.mismatches
            ));
        }
        rows.push(total.row(s, started.elapsed().as_secs_f64()));
    }
    println!("{}", Totals::HEADER);
    for r in rows {
        println!("{r}");
    }
    for n in notes {
        println!("{n}");
    }
    for &s in &strategies {
        let seeds: Vec<String> = failing
            .iter()
            .filter(|(f, _)| *f == s)
            .map(|(_, seed)| seed.to_string())
            .collect();
        const SHOWN: usize = 20;
        match seeds.len() {
            0 => {}
            n if n <= SHOWN => println!("{s}: failing seeds {}", seeds.join(", ")),
            n => println!(
                "{s}: failing seeds {}, … ({n} in all)",
                seeds[..SHOWN].join(", ")
            ),
        }
    }
    if let Some((s, seed)) = failure {
        println!();
        report_failure(s, seed, &args);
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// Runs one seed and prints it; whether it passed.
fn one(strategy: Strategy, seed: u64, args: &Args) -> bool {
    let c = config(strategy, seed, args);
    match run(&c, seed) {
        Ok(o) => {
            println!(
                "strategy {strategy}, seed {seed}: devices {}+{}, {} messages, trace {}",
                c.devices.0,
                c.devices.1,
                c.messages,
                hex(&o.trace)
            );
            for (i, f) in o.schedule.iter().enumerate() {
                println!("  fault {i}: {f}");
            }
            print_stats(&o.stats);
            if o.passed() {
                println!("  passed");
                true
            } else {
                for v in &o.violations {
                    println!("  VIOLATION: {v}");
                }
                false
            }
        }
        Err(e) => {
            eprintln!("chorus-sim: {e}");
            false
        }
    }
}

fn report_failure(strategy: Strategy, seed: u64, args: &Args) {
    let c = config(strategy, seed, args);
    println!("FAILED: strategy {strategy}, seed {seed}; shrinking the fault schedule…");
    match shrink(&c, seed) {
        Ok((keep, o)) => {
            for v in &o.violations {
                println!("  VIOLATION: {v}");
            }
            for f in &o.schedule {
                println!("  fault: {f}");
            }
            let list: Vec<String> = keep.iter().map(usize::to_string).collect();
            let faults = if list.is_empty() {
                " --faults none".to_owned()
            } else {
                format!(" --faults {}", list.join(","))
            };
            let calm = if args.calm { " --calm" } else { "" };
            println!("reproduce: chorus-sim --strategy {strategy} --seed {seed}{faults}{calm}");
        }
        Err(e) => eprintln!("chorus-sim: {e}"),
    }
}

fn print_stats(s: &Stats) {
    println!(
        "  typed {}, delivered {}, lost {}, shown twice {}, dropped with a destroyed device {}, unavailable {}",
        s.typed, s.delivered, s.lost, s.duplicated, s.dropped_with_device, s.unavailable
    );
    println!(
        "  races lost {}, device-set refusals {}, lease terms {}, handed over {}, fanned out {}, stranded {}, forks {}, message keys used twice {}, requests {}, bytes up {}, down {}, timeouts {}, faults {}, destroyed {}, linked {}",
        s.conflicts,
        s.mismatches,
        s.lease_terms,
        s.forwarded,
        s.fanned_out,
        s.stranded,
        s.forks,
        s.key_reuse,
        s.requests,
        s.bytes_up,
        s.bytes_down,
        s.timeouts,
        s.faults,
        s.destroyed,
        s.linked
    );
    if s.revoked > 0 {
        println!(
            "  revoked {}: its clone sent {}, shown before the heal {}, refused {}, messages it made unreadable before the heal {}, contact devices never healed {}",
            s.revoked,
            s.clone_sent,
            s.clone_accepted,
            s.clone_refused,
            s.stolen_by_clone,
            s.clone_unhealed
        );
    }
    let mut l = s.latency_ms.clone();
    l.sort_unstable();
    println!(
        "  latency p50 {} ms, max {} ms; settled {} ms after the window",
        pct(&l, 50),
        l.last().copied().unwrap_or(0),
        s.converge_ms.map_or("never".into(), |m| m.to_string())
    );
}

fn pct(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

fn hex(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

#[derive(Default)]
struct Totals {
    runs: u64,
    passed: u64,
    converged: u64,
    s: Stats,
    latency: Vec<u64>,
    converge: Vec<u64>,
}

impl Totals {
    const HEADER: &str = "| strategy | runs | passed | converged | typed | delivered | lost | shown twice | devices linked | devices revoked | clone sent / shown before the heal / messages it made unreadable / contact devices unhealed | dropped with destroyed device | stranded (primary gone) | races lost | lease terms | handed over | fanned out | forks | message keys used twice | requests / msg | bytes / msg | latency p50 / p99 ms | settle p50 / max ms | delivered while a sibling was down | CPU µs / msg |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

    fn add(&mut self, o: &Outcome) {
        self.runs += 1;
        self.passed += u64::from(o.passed());
        self.converged += u64::from(o.stats.converged);
        let s = &o.stats;
        let t = &mut self.s;
        t.typed += s.typed;
        t.delivered += s.delivered;
        t.lost += s.lost;
        t.duplicated += s.duplicated;
        t.dropped_with_device += s.dropped_with_device;
        t.linked += s.linked;
        t.revoked += s.revoked;
        t.clone_sent += s.clone_sent;
        t.clone_accepted += s.clone_accepted;
        t.clone_unhealed += s.clone_unhealed;
        t.stolen_by_clone += s.stolen_by_clone;
        t.stranded += s.stranded;
        t.conflicts += s.conflicts;
        t.lease_terms += s.lease_terms;
        t.forwarded += s.forwarded;
        t.fanned_out += s.fanned_out;
        t.mismatches += s.mismatches;
        t.key_reuse += s.key_reuse;
        t.forks += s.forks;
        t.requests += s.requests;
        t.bytes_up += s.bytes_up;
        t.bytes_down += s.bytes_down;
        t.typed_while_down += s.typed_while_down;
        t.delivered_while_down += s.delivered_while_down;
        self.latency.extend(&s.latency_ms);
        if let Some(c) = s.converge_ms {
            self.converge.push(c);
        }
    }

    fn row(mut self, strategy: Strategy, seconds: f64) -> String {
        self.latency.sort_unstable();
        self.converge.sort_unstable();
        let t = &self.s;
        let per = |x: u64| x as f64 / t.typed.max(1) as f64;
        format!(
            "| {strategy} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {} / {} | {} / {} | {} of {} | {:.0} |",
            self.runs,
            self.passed,
            self.converged,
            t.typed,
            t.delivered,
            t.lost,
            t.duplicated,
            t.linked,
            t.revoked,
            t.clone_sent,
            t.clone_accepted,
            t.stolen_by_clone,
            t.clone_unhealed,
            t.dropped_with_device,
            t.stranded,
            t.conflicts,
            t.lease_terms,
            t.forwarded,
            t.fanned_out,
            t.forks,
            t.key_reuse,
            per(t.requests),
            per(t.bytes_up + t.bytes_down),
            pct(&self.latency, 50),
            pct(&self.latency, 99),
            pct(&self.converge, 50),
            self.converge.last().copied().unwrap_or(0),
            t.delivered_while_down,
            t.typed_while_down,
            seconds * 1e6 / t.typed.max(1) as f64,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_and_strategy_names_parse_or_say_what_is_wrong() {
        assert_eq!(parse_faults("none").unwrap().0, BTreeSet::new());
        assert_eq!(parse_faults("0,3").unwrap().0, BTreeSet::from([0, 3]));
        assert_eq!(parse_faults(" 2 ").unwrap().0, BTreeSet::from([2]));
        for bad in ["", "x", "1,,2", "-1", "0;3"] {
            let e = parse_faults(bad).unwrap_err();
            assert!(e.contains("is not a fault index"), "{bad:?}: {e}");
        }
        assert_eq!(parse_strategies("all").unwrap().0, Strategy::ALL.to_vec());
        assert_eq!(
            parse_strategies("leaderless").unwrap().0,
            vec![Strategy::Leaderless]
        );
        assert!(
            parse_strategies("Leader")
                .unwrap_err()
                .contains("unknown strategy")
        );
    }
}
