//! A campaign: generate programs, evaluate them in batches, count the classes, shrink
//! the findings.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ast::Program;
use crate::batch::{Class, Job, Timing, Workspace};
use crate::gen::{self, Config};
use crate::rng::Rng;
use crate::{print, shrink};

#[derive(Clone, Debug)]
pub struct Options {
    pub programs: usize,
    pub seed: u64,
    /// Programs per generated crate.
    pub batch: usize,
    /// Shrink the findings.
    pub shrink: bool,
    /// The longest a single finding is shrunk.
    pub shrink_budget: Duration,
    /// Where the generated crates and their target directory live.
    pub work: PathBuf,
    /// The name of this campaign's crate (concurrent campaigns need different ones).
    pub name: String,
    pub config: Config,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Wait before each build while this file exists (a machine shared with timing
    /// benchmarks); the time waited is not counted in the campaign's duration.
    pub pause_while: Option<PathBuf>,
}

impl Options {
    pub fn new(programs: usize, seed: u64) -> Options {
        Options {
            programs,
            seed,
            batch: 40,
            shrink: true,
            shrink_budget: Duration::from_secs(600),
            work: default_work_dir(),
            name: "campaign".into(),
            config: Config::default(),
            verbose: false,
            pause_while: None,
        }
    }
}

/// The repository this fuzzer is part of.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the fuzzer sits in the repository").to_path_buf()
}

/// `target/adjoint-fuzz` of the repository (or of `CARGO_TARGET_DIR`).
pub fn default_work_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"));
    target.join("adjoint-fuzz")
}

/// A program that fails, before and after shrinking.
#[derive(Clone, Debug)]
pub struct Finding {
    pub index: usize,
    pub seed: u64,
    pub case: u64,
    pub class: Class,
    pub program: Program,
    pub shrunk: Option<(Program, Class)>,
}

#[derive(Default, Debug)]
pub struct Summary {
    pub counts: BTreeMap<&'static str, usize>,
    /// Distinct messages of the macro's rejections, with how often each occurred.
    pub rejections: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    /// Programs the generator got wrong (should be none).
    pub invalid: Vec<(usize, String)>,
    pub duration: Duration,
    /// Time spent waiting for `pause_while` to disappear.
    pub paused: Duration,
    pub timing: Timing,
    pub programs: usize,
}

impl Summary {
    pub fn count(&self, key: &str) -> usize {
        self.counts.get(key).copied().unwrap_or(0)
    }

    /// The number of programs whose class is a defect of adjoint.
    pub fn defects(&self) -> usize {
        self.findings.len()
    }

    pub fn report(&self) -> String {
        let mut s = String::new();
        writeln!(
            s,
            "{} programs in {:.1} s ({} builds, {:.1} s compiling, {:.1} s running{})",
            self.programs,
            self.duration.as_secs_f64(),
            self.timing.compiles,
            self.timing.compile.as_secs_f64(),
            self.timing.run.as_secs_f64(),
            if self.paused.is_zero() {
                String::new()
            } else {
                format!("; {:.0} s paused, not counted", self.paused.as_secs_f64())
            }
        )
        .unwrap();
        for key in [
            "passed",
            "clean rejection",
            "rejection with other errors",
            "macro panic",
            "error in generated code",
            "wrong gradient",
            "NaN where differences are finite",
            "runtime panic",
            "skipped (no finite point)",
            "invalid program (generator bug)",
        ] {
            writeln!(s, "  {:<34} {}", key, self.count(key)).unwrap();
        }
        if !self.rejections.is_empty() {
            writeln!(s, "rejections:").unwrap();
            for (m, n) in &self.rejections {
                writeln!(s, "  {n:>4} × {m}").unwrap();
            }
        }
        for (i, msg) in &self.invalid {
            writeln!(s, "invalid program {i}: {msg}").unwrap();
        }
        for f in &self.findings {
            writeln!(s, "\nfinding: program {} (seed {:#x}, input case {:#x}): {}", f.index, f.seed, f.case, f.class)
                .unwrap();
            match &f.shrunk {
                Some((p, c)) => {
                    writeln!(s, "shrunk to {} nodes ({c}):\n{}", p.size(), print::functions(p)).unwrap();
                }
                None => writeln!(s, "{}", print::functions(&f.program)).unwrap(),
            }
        }
        s
    }
}

/// The seed of program `i` of a campaign.
pub fn program_seed(seed: u64, i: usize) -> u64 {
    let mut r = Rng::new(seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    r.next_u64()
}

pub fn campaign(opts: &Options) -> Summary {
    let started = Instant::now();
    let mut ws = Workspace::new(&opts.work, &opts.name, &repo());
    ws.verbose = opts.verbose;
    let mut summary = Summary { programs: opts.programs, ..Summary::default() };
    let mut timing = Timing::default();
    ws.pause_while = opts.pause_while.clone();
    let mut start = 0;
    while start < opts.programs {
        let end = (start + opts.batch).min(opts.programs);
        let seeds: Vec<u64> = (start..end).map(|i| program_seed(opts.seed, i)).collect();
        let programs: Vec<Program> = seeds.iter().map(|s| gen::program(*s, &opts.config)).collect();
        let cases: Vec<u64> = seeds.iter().map(|s| s.rotate_left(17) ^ 0x5EED).collect();
        let jobs: Vec<Job> = programs.iter().zip(&cases).map(|(p, c)| Job { program: p, case: *c }).collect();
        let classes = ws.evaluate(&jobs, &mut timing);
        for (k, class) in classes.into_iter().enumerate() {
            let index = start + k;
            *summary.counts.entry(class.key()).or_default() += 1;
            if let Class::Rejected { message, .. } = &class {
                *summary.rejections.entry(message.clone()).or_default() += 1;
            }
            if let Class::Invalid(msg) = &class {
                summary.invalid.push((index, msg.clone()));
            }
            if class.is_finding() {
                summary.findings.push(Finding {
                    index,
                    seed: seeds[k],
                    case: cases[k],
                    class,
                    program: programs[k].clone(),
                    shrunk: None,
                });
            }
        }
        if opts.verbose {
            eprintln!(
                "[{:>6.1} s] {end}/{} programs: {}",
                started.elapsed().as_secs_f64(),
                opts.programs,
                summary.counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            );
        }
        start = end;
    }
    if opts.shrink {
        let shrink_ws = {
            let mut w = Workspace::new(&opts.work, &format!("{}-shrink", opts.name), &repo());
            w.verbose = opts.verbose;
            w.pause_while = opts.pause_while.clone();
            w
        };
        for f in &mut summary.findings {
            if opts.verbose {
                eprintln!("shrinking program {} ({})", f.index, f.class.key());
            }
            let shrunk = shrink::shrink(&shrink_ws, &f.program, &f.class, f.case, opts.shrink_budget, &mut timing);
            f.shrunk = Some(shrunk);
        }
    }
    summary.paused = timing.paused;
    summary.timing = timing;
    summary.duration = started.elapsed().saturating_sub(summary.paused);
    summary
}
