//! Compiling and running programs in batches.
//!
//! A batch is one generated crate with one module per program (`src/p0007.rs`), so
//! the cost of building `adjoint` and of starting rustc is paid once per batch rather
//! than per program. rustc's JSON diagnostics are attributed to programs by file;
//! programs that do not compile are classified from their errors and left out, and the
//! rest is compiled again (a later compiler phase may then report errors an earlier
//! one's failures hid). The binary then checks every program (`harness.rs`) and prints
//! one line per program; a program that kills the process is run again on its own.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ast::Program;
use crate::print;

/// What happened to one program.
#[derive(Clone, Debug, PartialEq)]
pub enum Class {
    /// Compiled, and every gradient matched the finite differences.
    Passed,
    /// The macro rejected the program with its own message (a `compile_error!` at the
    /// user's tokens). `cascade`: rustc reported other errors for the same program too.
    Rejected { message: String, cascade: bool },
    /// The macro panicked.
    MacroPanic(String),
    /// rustc rejected the code the macro generated.
    GeneratedCodeError(String),
    /// A gradient differs from the finite differences.
    WrongGradient(String),
    /// A gradient is NaN (or infinite) where the finite differences are finite.
    Nan(String),
    /// The derivative code panicked (or killed the process).
    RuntimePanic(String),
    /// Not judged: no input point with a finite value.
    Skipped(String),
    /// rustc rejected the user's own code: a bug of the generator.
    Invalid(String),
}

impl Class {
    /// The name counts are reported under.
    pub fn key(&self) -> &'static str {
        match self {
            Class::Passed => "passed",
            Class::Rejected { cascade: false, .. } => "clean rejection",
            Class::Rejected { cascade: true, .. } => "rejection with other errors",
            Class::MacroPanic(_) => "macro panic",
            Class::GeneratedCodeError(_) => "error in generated code",
            Class::WrongGradient(_) => "wrong gradient",
            Class::Nan(_) => "NaN where differences are finite",
            Class::RuntimePanic(_) => "runtime panic",
            Class::Skipped(_) => "skipped (no finite point)",
            Class::Invalid(_) => "invalid program (generator bug)",
        }
    }

    /// Whether this is a defect of adjoint worth shrinking and reporting.
    pub fn is_finding(&self) -> bool {
        matches!(
            self,
            Class::MacroPanic(_)
                | Class::GeneratedCodeError(_)
                | Class::WrongGradient(_)
                | Class::Nan(_)
                | Class::RuntimePanic(_)
                | Class::Rejected { cascade: true, .. }
        )
    }

    pub fn detail(&self) -> &str {
        match self {
            Class::Passed => "",
            Class::Rejected { message, .. } => message,
            Class::MacroPanic(s)
            | Class::GeneratedCodeError(s)
            | Class::WrongGradient(s)
            | Class::Nan(s)
            | Class::RuntimePanic(s)
            | Class::Skipped(s)
            | Class::Invalid(s) => s,
        }
    }

    /// Whether `other` is the same kind of failure (what a shrunk program must keep):
    /// the same class, and for errors in generated code the same error code.
    pub fn same_failure(&self, other: &Class) -> bool {
        match (self, other) {
            (Class::GeneratedCodeError(a), Class::GeneratedCodeError(b)) => first_word(a) == first_word(b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other) && self.key() == other.key(),
        }
    }
}

fn first_word(s: &str) -> &str {
    s.split(|c: char| c == ':' || c.is_whitespace()).next().unwrap_or("")
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            "" => write!(f, "{}", self.key()),
            d => write!(f, "{}: {d}", self.key()),
        }
    }
}

/// A program to evaluate, with the seed of its input point.
pub struct Job<'a> {
    pub program: &'a Program,
    pub case: u64,
}

/// Where batches are built.
pub struct Workspace {
    /// The generated crate.
    pub dir: PathBuf,
    /// Cargo's target directory (shared by every workspace).
    pub target: PathBuf,
    /// The adjoint repository.
    pub repo: PathBuf,
    /// Print cargo's progress.
    pub verbose: bool,
    /// How long the batch binary may run.
    pub timeout: Duration,
    /// Wait before each build while this file exists.
    pub pause_while: Option<PathBuf>,
}

/// Time spent, for the report.
#[derive(Default, Clone, Debug)]
pub struct Timing {
    pub compile: Duration,
    pub run: Duration,
    pub compiles: usize,
    /// Time waited for [`Workspace::pause_while`].
    pub paused: Duration,
}

impl Workspace {
    /// A workspace named `name` under `root` (the crate in `root/name`, the target
    /// directory `root/target`).
    pub fn new(root: &Path, name: &str, repo: &Path) -> Workspace {
        Workspace {
            dir: root.join(name),
            target: root.join("target"),
            repo: repo.to_path_buf(),
            verbose: false,
            timeout: Duration::from_secs(300),
            pause_while: None,
        }
    }

    fn package(&self) -> String {
        let base = self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("batch");
        let clean: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        format!("fuzz_{clean}")
    }

    fn write_crate(&self, jobs: &[Job], alive: &[usize]) -> std::io::Result<()> {
        let src = self.dir.join("src");
        std::fs::create_dir_all(&src)?;
        let manifest = format!(
            "[package]\nname = \"{}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nadjoint = {{ path = {:?} }}\n\n\
             [profile.dev]\nopt-level = 0\ndebug = 0\n\n\
             [profile.dev.package.\"*\"]\nopt-level = 1\n\n[workspace]\n",
            self.package(),
            self.repo.display().to_string()
        );
        write_if_changed(&self.dir.join("Cargo.toml"), &manifest)?;
        let lock = self.dir.join("Cargo.lock");
        if !lock.exists() {
            // The repository's versions, so the build needs no registry access.
            let _ = std::fs::copy(self.repo.join("Cargo.lock"), &lock);
        }
        write_if_changed(&src.join("harness.rs"), include_str!("harness.rs"))?;
        let mut main = String::from(
            "//! Generated by adjoint-fuzz.\n#![allow(warnings)]\n#![recursion_limit = \"512\"]\n\nmod harness;\n",
        );
        for &i in alive {
            main.push_str(&format!("mod p{i:04};\n"));
        }
        main.push_str("\nfn main() {\n    harness::install_hook();\n    let only = std::env::args().nth(1);\n");
        main.push_str("    let programs: &[(&str, fn(u64) -> harness::Report, u64)] = &[\n");
        for &i in alive {
            main.push_str(&format!("        (\"p{i:04}\", p{i:04}::run, {}),\n", jobs[i].case));
        }
        main.push_str(
            "    ];\n    for (name, run, case) in programs {\n        if only.as_deref().is_some_and(|o| o != *name) {\n            continue;\n        }\n        let r = harness::run(|| run(*case));\n        println!(\"RESULT {name} {} {}\", r.outcome, r.detail.replace('\\n', \" \"));\n    }\n}\n",
        );
        write_if_changed(&src.join("main.rs"), &main)?;
        for &i in alive {
            write_if_changed(&src.join(format!("p{i:04}.rs")), &print::module(jobs[i].program))?;
        }
        Ok(())
    }

    /// Compile and check every job; one class per job.
    pub fn evaluate(&self, jobs: &[Job], timing: &mut Timing) -> Vec<Class> {
        let mut classes: Vec<Option<Class>> = vec![None; jobs.len()];
        let mut alive: Vec<usize> = (0..jobs.len()).collect();
        // Old module files of another batch are not compiled (only `main.rs`'s `mod`s
        // are), but stale ones are removed so the directory shows this batch.
        if let Ok(entries) = std::fs::read_dir(self.dir.join("src")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.starts_with('p') && name.ends_with(".rs") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        loop {
            if alive.is_empty() {
                break;
            }
            if let Err(e) = self.write_crate(jobs, &alive) {
                panic!("cannot write the generated crate in {}: {e}", self.dir.display());
            }
            if let Some(f) = &self.pause_while {
                let t = Instant::now();
                while f.exists() {
                    std::thread::sleep(Duration::from_secs(30));
                }
                timing.paused += t.elapsed();
            }
            let started = Instant::now();
            let build = self.build();
            timing.compile += started.elapsed();
            timing.compiles += 1;
            if build.success {
                break;
            }
            let mut attributed = false;
            for (file, errors) in &build.errors {
                let Some(i) = program_of(file) else { continue };
                if !alive.contains(&i) {
                    continue;
                }
                attributed = true;
                classes[i] = Some(classify_errors(errors));
                alive.retain(|&j| j != i);
            }
            if !attributed {
                // An error outside the programs' files: nothing can be run.
                let first = build.errors.values().flatten().next().map(|e| e.text.clone());
                let msg = first.unwrap_or_else(|| format!("the build failed without a diagnostic: {}", build.stderr));
                for &i in &alive {
                    classes[i] = Some(Class::Invalid(format!("build failed outside the programs: {msg}")));
                }
                alive.clear();
            }
        }
        if !alive.is_empty() {
            let started = Instant::now();
            let mut results = self.run(None, self.timeout);
            let missing: Vec<usize> = alive.iter().copied().filter(|i| !results.contains_key(i)).collect();
            for i in missing {
                // The process died or hung before this program's line: run it alone.
                let alone = self.run(Some(i), Duration::from_secs(60));
                let r = alone.get(&i).cloned().unwrap_or_else(|| {
                    Class::RuntimePanic(
                        "the process died or hung (a stack overflow, an abort or an endless loop)".into(),
                    )
                });
                results.insert(i, r);
            }
            timing.run += started.elapsed();
            for i in alive {
                classes[i] = results.remove(&i);
            }
        }
        classes.into_iter().map(|c| c.unwrap_or_else(|| Class::Invalid("no result".into()))).collect()
    }

    fn build(&self) -> Build {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--offline")
            .arg("--message-format=json")
            .arg("--manifest-path")
            .arg(self.dir.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .stdout(Stdio::piped())
            .stderr(if self.verbose { Stdio::inherit() } else { Stdio::piped() });
        let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut errors: BTreeMap<String, Vec<Diagnostic>> = BTreeMap::new();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if v["reason"] != "compiler-message" || v["message"]["level"] != "error" {
                continue;
            }
            let d = Diagnostic::from_json(&v["message"]);
            if d.message.starts_with("aborting due to") || d.message.starts_with("could not compile") {
                continue;
            }
            errors.entry(d.file.clone().unwrap_or_default()).or_default().push(d);
        }
        Build {
            success: out.status.success(),
            errors,
            stderr: String::from_utf8_lossy(&out.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | "),
        }
    }

    /// Run the batch binary (all programs, or one), with a timeout.
    fn run(&self, only: Option<usize>, timeout: Duration) -> BTreeMap<usize, Class> {
        let exe = self.target.join("debug").join(self.package());
        let mut cmd = Command::new(&exe);
        if let Some(i) = only {
            cmd.arg(format!("p{i:04}"));
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let text = reader.join().unwrap_or_default();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("RESULT ") else { continue };
            let mut parts = rest.splitn(3, ' ');
            let (Some(name), Some(outcome)) = (parts.next(), parts.next()) else { continue };
            let detail = parts.next().unwrap_or("").to_string();
            let Some(i) = name.strip_prefix('p').and_then(|n| n.parse::<usize>().ok()) else { continue };
            let class = match outcome {
                "passed" => Class::Passed,
                "wrong" => Class::WrongGradient(detail),
                "nan" => Class::Nan(detail),
                "panic" => Class::RuntimePanic(detail),
                _ => Class::Skipped(detail),
            };
            out.insert(i, class);
        }
        out
    }
}

fn write_if_changed(path: &Path, text: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text)
}

struct Build {
    success: bool,
    /// Errors by the file of their primary span.
    errors: BTreeMap<String, Vec<Diagnostic>>,
    stderr: String,
}

/// One error of rustc.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub message: String,
    pub code: Option<String>,
    pub file: Option<String>,
    /// The primary span comes from a macro expansion (generated code).
    pub in_expansion: bool,
    /// The message and its notes, on one line.
    pub text: String,
}

impl Diagnostic {
    fn from_json(m: &serde_json::Value) -> Diagnostic {
        let message = m["message"].as_str().unwrap_or("").to_string();
        let code = m["code"]["code"].as_str().map(str::to_string);
        let spans = m["spans"].as_array().cloned().unwrap_or_default();
        let primary = spans.iter().find(|s| s["is_primary"] == true).or(spans.first());
        let file = primary.and_then(|s| s["file_name"].as_str()).map(str::to_string);
        let line = primary.and_then(|s| s["line_start"].as_u64()).unwrap_or(0);
        let in_expansion = primary.is_some_and(|s| !s["expansion"].is_null());
        let children: Vec<String> = m["children"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["message"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let code_text = code.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
        let mut text = format!("{code_text}{message} (line {line})");
        for c in children.iter().take(3) {
            text.push_str(" / ");
            text.push_str(c);
        }
        Diagnostic { message, code, file, in_expansion, text: text.replace('\n', " ") }
    }
}

fn program_of(file: &str) -> Option<usize> {
    let name = Path::new(file).file_name()?.to_str()?;
    name.strip_prefix('p')?.strip_suffix(".rs")?.parse().ok()
}

/// The class of a program that did not compile, from its errors.
fn classify_errors(errors: &[Diagnostic]) -> Class {
    if let Some(p) = errors.iter().find(|e| e.message.contains("panicked")) {
        return Class::MacroPanic(p.text.clone());
    }
    let own: Vec<&Diagnostic> = errors.iter().filter(|e| e.code.is_none()).collect();
    if let Some(first) = own.first() {
        return Class::Rejected { message: first.text.clone(), cascade: own.len() < errors.len() };
    }
    let generated = errors.iter().find(|e| e.in_expansion);
    match generated {
        Some(e) => Class::GeneratedCodeError(e.text.clone()),
        None => Class::Invalid(errors[0].text.clone()),
    }
}
