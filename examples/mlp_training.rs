//! Training a 784-256-256-10 MLP with Adam on a synthetic classification set, with a
//! progress bar and the loss curve written to `loss.svg`.
//!
//! The data imitate a small image-classification task: 10 classes, each a mixture of
//! 3 modes in a 20-dimensional latent space, seen through a fixed random non-linear
//! map into 784 "pixels" with added noise. 16384 training and 4096 test examples.
//!
//! Run with `cargo run --release --example mlp_training [epochs] [loss.svg]`.
//!
//! It also reports the heap memory of a training step, counted by a global allocator
//! that tracks live and peak bytes, against what the step must hold: parameters,
//! their gradients and the activations of the batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use adjoint::prelude::*;
use adjoint::tensor::in_thread_pool;
use adjoint::{Adam, Linear};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;

const INPUTS: usize = 784;
const HIDDEN: usize = 256;
const CLASSES: usize = 10;
const LATENT: usize = 20;
const MODES: usize = 3;
const TRAIN: usize = 16384;
const TEST: usize = 4096;
const BATCH: usize = 128;
/// Steps between two evaluations of the test loss (a divisor of TRAIN / BATCH).
const EVAL_EVERY: usize = 32;

#[derive(Differentiable)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl Mlp {
    fn new(rng: &mut Rng) -> Self {
        Mlp {
            fc1: Linear::new(INPUTS, HIDDEN, rng),
            fc2: Linear::new(HIDDEN, HIDDEN, rng),
            fc3: Linear::new(HIDDEN, CLASSES, rng),
        }
    }

    /// The logits, `[batch, 10]`.
    #[differentiable]
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.fc1.forward(x).relu();
        let h = self.fc2.forward(&h).relu();
        self.fc3.forward(&h)
    }

    /// The mean cross-entropy of a batch. `#[no_grad]` on the images: only the
    /// parameters need a gradient.
    #[differentiable]
    fn loss(&self, #[no_grad] x: &Tensor, labels: &[usize]) -> Tensor {
        adjoint::cross_entropy(&self.forward(x), labels)
    }
}

/// The system allocator, counting the bytes live and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Restarts the peak at the current live bytes.
fn reset_peak() {
    PEAK.store(live_bytes(), Ordering::Relaxed);
}

fn peak_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A labelled data set: images `[n, 784]` and their classes.
struct Data {
    x: Tensor,
    labels: Vec<usize>,
}

/// The generator of the synthetic task (fixed by its seed).
struct Task {
    modes: Tensor,  // [CLASSES * MODES, LATENT]
    mixing: Tensor, // [LATENT, INPUTS]
}

impl Task {
    fn new(rng: &mut Rng) -> Self {
        Task {
            modes: Tensor::randn(&[CLASSES * MODES, LATENT], rng) * 1.0,
            mixing: Tensor::randn(&[LATENT, INPUTS], rng) * (1.0 / (LATENT as f32).sqrt()),
        }
    }

    fn sample(&self, n: usize, rng: &mut Rng) -> Data {
        let labels: Vec<usize> = (0..n).map(|_| (rng.next_u64() % CLASSES as u64) as usize).collect();
        let mode_rows: Vec<usize> =
            labels.iter().map(|&c| c * MODES + (rng.next_u64() % MODES as u64) as usize).collect();
        let z = self.modes.index_rows(&mode_rows) + Tensor::randn(&[n, LATENT], rng);
        let x = z.matmul(&self.mixing).tanh() + Tensor::randn(&[n, INPUTS], rng) * 0.7;
        Data { x, labels }
    }
}

/// Loss and accuracy on a whole data set, in batches of 1024 (no gradients).
fn evaluate(net: &Mlp, data: &Data) -> (f32, f32) {
    let n = data.labels.len();
    let (mut loss, mut correct) = (0.0, 0);
    for start in (0..n).step_by(1024) {
        let len = 1024.min(n - start);
        let logits = net.forward(&data.x.narrow(0, start, len));
        let labels = &data.labels[start..start + len];
        loss += logits.cross_entropy(labels).item() * len as f32;
        // `argmax_dim` gives flat indices into `logits`; the class is the column.
        correct += logits.argmax_dim(1).iter().zip(labels).filter(|&(p, l)| p % CLASSES == *l).count();
    }
    (loss / n as f32, correct as f32 / n as f32)
}

/// A random permutation of `0..n` (Fisher–Yates).
fn shuffled(n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
}

fn plot(path: &str, train: &[(f32, f32)], test: &[(f32, f32)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = train.last().map_or(1.0, |p| p.0);
    let y_max = train.iter().chain(test).map(|p| p.1).fold(0.0, f32::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("784-256-256-10 MLP, Adam (lr 1e-3), batch 128", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc("epoch").y_desc("cross-entropy").draw()?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), &BLUE))?
        .label("training batches (moving average of 20)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(test.iter().copied(), RED.stroke_width(2)))?
        .label("test set (every 32 steps)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// The heap of a training step against what it must hold. `at_rest`: live bytes before
/// the measured step (the data, the parameters and their last gradients, Adam's
/// moments, and whatever the first step left behind); `peak`: the most live during it.
fn report_memory(parameters: usize, data_bytes: usize, rest_before_first: usize, at_rest: usize, peak: usize) {
    let float = std::mem::size_of::<f32>();
    let params = parameters * float;
    // The step's activations: the batch, fc1's output and its relu, fc2's and its relu,
    // the logits.
    let activations = BATCH * (INPUTS + 4 * HIDDEN + CLASSES) * float;
    let needed = 2 * params + activations; // parameters, gradients, activations
    let adam = 2 * params;
    // Kept from the first step on besides the gradients: the GEMM library's per-thread
    // workspace (`gemm`'s L2-sized slab), a fixed cost of the process.
    let kept = (at_rest - rest_before_first).saturating_sub(params);
    let used = peak - data_bytes - adam;
    println!(
        "heap: data {:.1} MiB; at rest between steps {:.1} MiB; peak during a step {:.1} MiB",
        mb(data_bytes),
        mb(at_rest),
        mb(peak)
    );
    println!(
        "step peak without the data and Adam's moments ({:.1} MiB): {:.2} MiB, of which {:.2} MiB kept since the first step; \
         parameters + gradients + activations: {:.2} MiB; ratio {:.2} ({:.2} with what is kept)",
        mb(adam),
        mb(used),
        mb(kept),
        mb(needed),
        (used - kept) as f64 / needed as f64,
        used as f64 / needed as f64
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().map(|a| a.parse().expect("epochs: a number")).unwrap_or(4);
    let svg = args.next().unwrap_or_else(|| "loss.svg".to_string());

    let mut rng = Rng::seed_from_u64(2024);
    let task = Task::new(&mut rng);
    let before_data = live_bytes();
    let train = task.sample(TRAIN, &mut rng);
    let test = task.sample(TEST, &mut rng);
    let data_bytes = live_bytes() - before_data;
    let net = Mlp::new(&mut rng);
    let count: usize = net.parameters().iter().map(|p| p.value().numel()).sum();
    println!("{count} parameters; {TRAIN} training and {TEST} test examples; {epochs} epochs of batches of {BATCH}");

    let (loss0, acc0) = evaluate(&net, &test);
    println!("before training: test loss {loss0:.4}, accuracy {:.2}%", 100.0 * acc0);

    let mut opt = Adam::new(net.parameters()).lr(1e-3);
    let steps_per_epoch = TRAIN / BATCH;
    let bar = ProgressBar::new((epochs * steps_per_epoch) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} steps [{elapsed_precise} < {eta}] {msg}")
            .expect("a valid template"),
    );
    let mut batch_losses = Vec::new();
    let mut train_curve = Vec::new();
    let mut test_curve = vec![(0.0, loss0)];
    // The heap of one training step (the second: Adam's moments exist by then, and the
    // first has left behind what persists across steps).
    let mut step_memory = None;
    let mut rest_before_first = 0;
    let start = Instant::now();
    // The loop runs on a worker of the kernels' thread pool: each parallel product then
    // hands its second half straight to the other worker, rather than being injected
    // from this thread, which would wake a worker and wait to be woken in turn.
    in_thread_pool(|| {
        for epoch in 0..epochs {
            let order = shuffled(TRAIN, &mut rng);
            for (i, rows) in order.chunks_exact(BATCH).enumerate() {
                let measured = epoch == 0 && i == 1;
                if measured {
                    reset_peak();
                }
                let at_rest = live_bytes();
                if epoch == 0 && i == 0 {
                    rest_before_first = at_rest;
                }
                let x = train.x.index_rows(rows);
                let labels: Vec<usize> = rows.iter().map(|&r| train.labels[r]).collect();
                opt.zero_grad();
                let loss = backward!(net.loss(&x, &labels)).item();
                opt.step();
                if measured {
                    step_memory = Some((rest_before_first, at_rest, peak_bytes()));
                }
                batch_losses.push(loss);
                let window = &batch_losses[batch_losses.len().saturating_sub(20)..];
                let smooth = window.iter().sum::<f32>() / window.len() as f32;
                train_curve.push((epoch as f32 + (i + 1) as f32 / steps_per_epoch as f32, smooth));
                bar.set_message(format!("epoch {} loss {smooth:.4}", epoch + 1));
                bar.inc(1);
                if (i + 1) % EVAL_EVERY == 0 {
                    let (test_loss, test_acc) = evaluate(&net, &test);
                    test_curve.push((epoch as f32 + (i + 1) as f32 / steps_per_epoch as f32, test_loss));
                    if i + 1 == steps_per_epoch {
                        bar.suspend(|| {
                            println!("epoch {}: test loss {test_loss:.4}, accuracy {:.2}%", epoch + 1, 100.0 * test_acc)
                        });
                    }
                }
            }
        }
    });
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let steps = epochs * steps_per_epoch;
    println!(
        "{steps} steps in {seconds:.2} s, test evaluations included ({:.2} ms per step)",
        1e3 * seconds / steps as f64
    );

    if let Some((rest_before_first, at_rest, peak)) = step_memory {
        report_memory(count, data_bytes, rest_before_first, at_rest, peak);
    }

    let (train_loss, train_acc) = evaluate(&net, &train);
    let (test_loss, test_acc) = evaluate(&net, &test);
    println!("final training loss {train_loss:.4}, accuracy {:.2}%", 100.0 * train_acc);
    println!("final test loss {test_loss:.4}, accuracy {:.2}%", 100.0 * test_acc);

    match plot(&svg, &train_curve, &test_curve) {
        Ok(()) => println!("loss curve written to {svg}"),
        Err(e) => eprintln!("could not write {svg}: {e}"),
    }
    assert!(test_loss < loss0, "training should lower the test loss");
}
