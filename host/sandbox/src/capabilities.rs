//! The store state of one export call and the exact set of imports the host grants:
//! wasi:http (through [`Outbound`]), wasi:io, wasi:clocks, wasi:random, the wasi:cli pieces
//! Rust's std uses (empty environment, empty stdin, bounded stdout/stderr), storage and log.

use crate::bindings::{
    Connector,
    scopable::integration::{log, storage},
};
use crate::manifest::Limits;
use crate::outbound::Outbound;
use crate::report::{CallReport, MAX_DENIALS_PER_CALL, MAX_DENIALS_RULE, TooManyDenials};
use crate::storage::StorageHandle;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most log lines one call may emit; later lines are counted and dropped.
const MAX_LOG_LINES: u32 = 1000;
/// Longest log line kept, in characters.
const MAX_LOG_CHARS: usize = 1000;
/// Extra room in each output pipe past the limit (larger than any single write from std).
const OUTPUT_SLACK: usize = 64 * 1024;

/// Time spent running one call (inside `poll`), as opposed to waiting on I/O.
#[derive(Clone, Default)]
pub struct CpuClock(Arc<Mutex<(Duration, Option<Instant>)>>);

impl CpuClock {
    /// Running time so far, including the poll in progress.
    pub fn used(&self) -> Duration {
        match self.0.lock() {
            Ok(g) => g.0 + g.1.map(|t| t.elapsed()).unwrap_or_default(),
            Err(_) => Duration::MAX,
        }
    }

    fn start(&self) {
        if let Ok(mut g) = self.0.lock() {
            g.1 = Some(Instant::now());
        }
    }

    fn stop(&self) {
        if let Ok(mut g) = self.0.lock()
            && let Some(t) = g.1.take()
        {
            g.0 += t.elapsed();
        }
    }
}

/// A future whose time inside `poll` is charged to a [`CpuClock`].
pub struct Running<F> {
    inner: std::pin::Pin<Box<F>>,
    clock: CpuClock,
}

impl<F> Running<F> {
    /// Wraps `inner`.
    pub fn new(inner: F, clock: CpuClock) -> Running<F> {
        Running {
            inner: Box::pin(inner),
            clock,
        }
    }
}

impl<F: Future> Future for Running<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        self.clock.start();
        let result = self.inner.as_mut().poll(cx);
        self.clock.stop();
        result
    }
}

/// Memory and table limits, recording when the memory limit is hit.
pub struct Limiter {
    inner: StoreLimits,
    report: Arc<Mutex<CallReport>>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let result = self.inner.memory_growing(current, desired, maximum);
        if !matches!(result, Ok(true))
            && let Ok(mut r) = self.report.lock()
        {
            r.memory_exceeded = true;
        }
        result
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// The state of one store (one export call).
pub struct GuestState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: Outbound,
    storage: StorageHandle,
    /// The resource limiter installed on the store.
    pub limiter: Limiter,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    output_cap: usize,
    /// Time spent running the current call.
    pub cpu: CpuClock,
    log_lines: u32,
    report: Arc<Mutex<CallReport>>,
}

impl GuestState {
    /// A fresh state: empty environment, no arguments, empty stdin, bounded output.
    pub fn new(
        limits: &Limits,
        outbound: Outbound,
        storage: StorageHandle,
        report: Arc<Mutex<CallReport>>,
    ) -> GuestState {
        let half = (limits.max_output_bytes as usize / 2).max(1);
        // Slack beyond the limit, so a write that crosses it is kept and seen as excess
        // (the pipe refuses writes past its capacity, which the guest may swallow).
        let stdout = MemoryOutputPipe::new(half + OUTPUT_SLACK);
        let stderr = MemoryOutputPipe::new(half + OUTPUT_SLACK);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let memory =
            usize::try_from(limits.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        GuestState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound,
            storage,
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(memory)
                    // Tables live outside linear memory: keep them small too (8 bytes an element).
                    .table_elements(100_000)
                    .instances(64)
                    .tables(8)
                    // `memory_size` bounds each memory; one memory keeps that the whole budget.
                    .memories(1)
                    .trap_on_grow_failure(true)
                    .build(),
                report: report.clone(),
            },
            stdout,
            stderr,
            output_cap: half,
            cpu: CpuClock::default(),
            log_lines: 0,
            report,
        }
    }

    /// The call's report.
    pub fn report(&self) -> &Arc<Mutex<CallReport>> {
        &self.report
    }

    /// The captured stdout and stderr (lossy UTF-8), noting when the limit was reached.
    pub fn take_output(&mut self) -> String {
        let mut out = String::new();
        for (name, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            if bytes.len() > self.output_cap
                && let Ok(mut r) = self.report.lock()
            {
                r.output_exceeded = true;
            }
            let text = String::from_utf8_lossy(&bytes);
            out.push_str(&format!(
                "[{name}] {}",
                text.chars().take(4096).collect::<String>()
            ));
        }
        out
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for GuestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl GuestState {
    /// Passes `result` on, or traps once the call went past [`MAX_DENIALS_PER_CALL`]
    /// refusals.
    fn unless_over_denial_limit<T>(&self, result: T) -> wasmtime::Result<T> {
        if self.report.lock().is_ok_and(|r| r.over_denial_limit()) {
            return Err(TooManyDenials.into());
        }
        Ok(result)
    }
}

/// Each operation's database work runs on the blocking pool ([`StorageHandle`]); the guest
/// waits for it as for any async import, and its CPU clock does not run meanwhile.
impl storage::Host for GuestState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, storage::StorageError>> {
        let result = self.storage.get(key).await;
        self.unless_over_denial_limit(result)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        let result = self.storage.set(key, value).await;
        self.unless_over_denial_limit(result)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), storage::StorageError>> {
        let result = self.storage.delete(key).await;
        self.unless_over_denial_limit(result)
    }

    async fn keys(&mut self) -> wasmtime::Result<Result<Vec<String>, storage::StorageError>> {
        let result = self.storage.keys().await;
        self.unless_over_denial_limit(result)
    }
}

/// When the call ends: one audit row per capability sums up the refusals past
/// [`MAX_DENIALS_PER_CALL`] that were not recorded one by one.
impl Drop for GuestState {
    fn drop(&mut self) {
        let unrecorded = match self.report.lock() {
            Ok(r) => r.unrecorded.clone(),
            Err(_) => return,
        };
        for (capability, n) in unrecorded {
            self.storage.audit().record(crate::audit::Event {
                capability,
                allowed: false,
                rule: Some(MAX_DENIALS_RULE.to_string()),
                detail: Some(format!(
                    "{n} more denials not recorded: the call was stopped after {MAX_DENIALS_PER_CALL}"
                )),
                ..crate::audit::Event::default()
            });
        }
    }
}

/// The contract's `types` interface holds only types; there is nothing to implement.
impl crate::bindings::scopable::integration::types::Host for GuestState {}

impl log::Host for GuestState {
    fn emit(&mut self, level: log::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(target: "connector", "log line limit reached; further lines dropped");
            }
            return;
        }
        // Controls and bidirectional overrides become visible escapes; the line is bounded.
        let message = crate::display::safe_within(&message, MAX_LOG_CHARS);
        match level {
            log::Level::Debug => tracing::debug!(target: "connector", "{message}"),
            log::Level::Info => tracing::info!(target: "connector", "{message}"),
            log::Level::Warn => tracing::warn!(target: "connector", "{message}"),
            log::Level::Error => tracing::error!(target: "connector", "{message}"),
        }
    }
}

/// Adds exactly the granted interfaces to `linker`. Filesystem and sockets are absent, so a
/// component importing them cannot be pre-linked (and is refused earlier by name).
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, random};
    // wasi:http types + outgoing-handler, wasi:io, wasi:clocks, wasi:random/random, stdio.
    wasmtime_wasi_http::p2::add_to_linker_async(linker)?;
    let l = linker;
    cli::environment::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::exit::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_input::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_output::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stdin::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stdout::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stderr::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    random::insecure::add_to_linker::<GuestState, WasiRandom>(l, |s| s.wasi.random())?;
    random::insecure_seed::add_to_linker::<GuestState, WasiRandom>(l, |s| s.wasi.random())?;
    // Every contract version the host runs; a component uses the one it was built for.
    Connector::add_to_linker::<GuestState, HasSelf<GuestState>>(l, |s| s)?;
    crate::bindings::v0_1::Connector::add_to_linker::<GuestState, HasSelf<GuestState>>(l, |s| s)?;
    Ok(())
}
