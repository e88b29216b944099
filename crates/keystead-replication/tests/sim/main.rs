//! Deterministic simulation (turmoil) of the replication crate: three nodes running openraft
//! with the production `LogStore` and `StateMachine`, each on a `Store` opened on its own
//! crashable disk (`keystead_store::sim_disk`), clients writing through them, and a seeded fault
//! schedule of partitions (the leader's above all), single-node crashes with power loss (clean,
//! torn, or just the process), and whole-cluster power losses. At the end everything is healed
//! and the run must converge: every acknowledged write on every node, every node's state
//! identical, nothing that no client wrote — and the same again after a final power loss of the
//! whole cluster. Throughout, no two nodes may apply different entries at one index. Readers
//! read the writers' secrets all the while, through the production read path (leader lease,
//! else a heartbeat round), and their history must be linearizable (`reads.rs`).
//!
//! `KEYSTEAD_SIM_SEEDS=N` runs seeds 0..N (default 16), `KEYSTEAD_SIM_SEEDS=A..B` seeds A..B;
//! `KEYSTEAD_SIM_SEED=s` runs seed `s` only
//! (what a failing run prints). Design, fault model and limits: `docs/simulation.md`.
//!
//! Determinism, honestly: all time is simulated, and the seed fixes the fault schedule (when
//! each fault comes, its kind, durations and coin tosses), the clients' values and pauses, and
//! turmoil's network (latencies). Three things are not seeded, so replaying a seed does not
//! retrace the same execution: openraft 0.9 draws election timeouts from the thread's RNG (its
//! runtime type is fixed by the production type config), tokio's scheduler randomizes
//! `select!` branches (seedable only under `--cfg tokio_unstable`), and the storage runs on
//! tokio's blocking threads as in production, whose completion order within one simulated
//! instant depends on real thread timing. Who leads when a fault hits therefore differs from
//! run to run. A replayed seed reproduces the schedule, not the interleaving: rerun a failing
//! seed several times, or run many seeds, to see a failure again.

mod net;
mod node;
mod reads;
mod workload;

use keystead_model::ObjectKind;
use keystead_replication::types::{Entry, LogId};
use keystead_store::sim_disk::SimDisk;
use keystead_store::Store;
use net::NetStats;
use node::{host, Registry, NODES};
use openraft::ServerState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use workload::{Outcome, Reads, Writes};

/// Clients writing concurrently, and the most writes each makes.
const CLIENTS: u64 = 4;
const WRITES_PER_CLIENT: u64 = 150;
/// Clients reading the writers' secrets until the faults end.
const READERS: u64 = 2;
/// Faults are injected from the first leader until this much simulated time has passed.
const CHAOS: Duration = Duration::from_secs(30);
/// Bounds (simulated) on the phases that wait for something.
const WARM_UP_LIMIT: Duration = Duration::from_secs(10);
const CLIENTS_LIMIT: Duration = Duration::from_secs(60);
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// The state machine's Raft metadata key (`state_machine.rs`), compared across nodes.
const APPLIED_KEY: &str = "sm_applied";

#[test]
fn replication_keeps_acknowledged_writes_through_partitions_crashes_and_power_loss() {
    let seeds: Vec<u64> = match std::env::var("KEYSTEAD_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("KEYSTEAD_SIM_SEED is a number")],
        Err(_) => {
            let seeds = std::env::var("KEYSTEAD_SIM_SEEDS").unwrap_or_else(|_| "16".into());
            let (from, to) = match seeds.split_once("..") {
                Some((from, to)) => (from, to),
                None => ("0", seeds.as_str()),
            };
            let number = |n: &str| -> u64 {
                n.parse()
                    .expect("KEYSTEAD_SIM_SEEDS is a count N or a range A..B")
            };
            (number(from)..number(to)).collect()
        }
    };
    // A panic inside a node's task (openraft checks its storage's answers with assertions) is
    // caught by tokio and would leave only a stuck node behind: count every panic, and fail
    // the seed it happened in.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut totals = Counts::new();
    for seed in seeds.iter().copied() {
        let panics = PANICS.load(Ordering::SeqCst);
        let run = std::panic::catch_unwind(|| run_seed(seed));
        let run = match run {
            Ok(Ok(_)) if PANICS.load(Ordering::SeqCst) != panics => {
                Ok(Err("a task panicked (message above)".to_string()))
            }
            run => run,
        };
        match run {
            Ok(Ok(report)) => {
                println!("{report}");
                totals.merge(&report.counts);
            }
            Ok(Err(failure)) => {
                println!("seed {seed} FAILED: {failure}");
                failures.push(format!("seed {seed}: {failure}"));
            }
            Err(_) => {
                println!("seed {seed} FAILED: panicked (message above)");
                failures.push(format!("seed {seed}: panicked"));
            }
        }
    }
    println!(
        "{} seeds in {:.1} s: {totals}",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "simulation failed:\n{}\nreplay one with: KEYSTEAD_SIM_SEED=<seed> cargo test -p \
         keystead-replication --test sim -- --nocapture",
        failures.join("\n")
    );
    if seeds.len() >= 8 {
        assert_every_fault_happened(&totals);
    }
}

static PANICS: AtomicU64 = AtomicU64::new(0);

/// One seed's run, start to finish.
fn run_seed(seed: u64) -> Result<Report, String> {
    let wall = Instant::now();
    let mut world = World::new(seed);
    world.warm_up()?;
    world.chaos()?;
    world.heal_everything()?;
    world.finish_clients()?;
    world.converge("after the faults")?;
    world.check("after the faults")?;
    world.check_reads()?;
    // The converged state must be what the disks keep: lose the power everywhere at once.
    world.power_cycle_everyone()?;
    world.converge("after a final power loss")?;
    world.check("after a final power loss")?;
    let report = world.report(wall.elapsed());
    // Not vacuous: the faults happened and the cluster did work through them.
    let c = &report.counts;
    if c.get(PARTITIONS) == 0
        || c.get(CRASHES) == 0
        || c.get(TERMS) < 2
        || c.get(ACKED) < 20
        || c.get(READS) < 20
        || c.get(LEASE_READS) == 0
        || c.get(FORWARDED) == 0
        || c.get(EARLY) == 0
    {
        return Err(format!("too little happened: {report}"));
    }
    Ok(report)
}

#[derive(Clone, Copy, Debug)]
enum Crash {
    /// Power lost: unsynced writes are gone.
    PowerLoss,
    /// Power lost after some unsynced writes reached the disk (seeded).
    Torn(u64),
    /// Only the process died: the page cache survives.
    Kill,
    /// The disk's power failed inside a commit's sync (armed earlier): the disk is done for.
    InCommit,
}

/// Named counts of what happened, printed in the order they were first counted.
#[derive(Clone, Default)]
struct Counts(Vec<(&'static str, u64)>);

const ACKED: &str = "acknowledged writes";
const PARTITIONS: &str = "partitions";
const LEADER_ISOLATIONS: &str = "of them isolating the leader";
const CRASHES: &str = "crashes";
const POWER_LOSSES: &str = "power losses";
const TORN: &str = "torn power losses";
const IN_COMMIT: &str = "power losses inside a commit";
const KILLS: &str = "process kills";
const AFTER_ELECTION: &str = "crashes right after an election";
const FULL: &str = "whole-cluster power losses";
const TERMS: &str = "leaders (term, node)";
const SNAPSHOTS: &str = "snapshots installed";
const FORWARDED: &str = "writes forwarded by a follower and applied";
const LOST: &str = "unsynced disk changes lost";
const SHARED: &str = "writes sharing an entry";
const READS: &str = "linearizable reads";
const FOLLOWER_READS: &str = "of them on a follower";
const LEASE_READS: &str = "read indexes from the leader lease";
const HEARTBEAT_READS: &str = "declined (not leading, or no lease: a heartbeat round)";
const EARLY: &str = "early appends accepted by followers";
const LEADER_LOST: &str = "crashed leaders that lost an entry a follower held";

impl Counts {
    fn new() -> Counts {
        let mut counts = Counts::default();
        for name in [
            ACKED,
            PARTITIONS,
            LEADER_ISOLATIONS,
            CRASHES,
            POWER_LOSSES,
            TORN,
            IN_COMMIT,
            KILLS,
            AFTER_ELECTION,
            FULL,
            TERMS,
            SNAPSHOTS,
            FORWARDED,
            LOST,
            SHARED,
            READS,
            FOLLOWER_READS,
            LEASE_READS,
            HEARTBEAT_READS,
            EARLY,
            LEADER_LOST,
        ] {
            counts.add(name, 0);
        }
        counts
    }

    fn add(&mut self, name: &'static str, n: u64) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, count)) => *count += n,
            None => self.0.push((name, n)),
        }
    }

    fn bump(&mut self, name: &'static str) {
        self.add(name, 1);
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, n)| *n)
    }

    fn merge(&mut self, other: &Counts) {
        for (name, n) in &other.0 {
            self.add(name, *n);
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, n)| format!("{n} {k}")).collect();
        f.write_str(&parts.join(", "))
    }
}

struct World<'a> {
    seed: u64,
    sim: turmoil::Sim<'a>,
    /// The fault schedule: when faults come, and a seed for each one's choices. Nothing the
    /// cluster does changes what it draws, so a seed's schedule replays even where the
    /// execution does not (see the header).
    rng: SmallRng,
    /// Choices made in reaction to what the cluster did (crashes after elections, restarts of
    /// nodes whose armed power loss happened).
    reactive: SmallRng,
    disks: BTreeMap<u64, SimDisk>,
    registry: Registry,
    writes: Writes,
    reads: Reads,
    stats: Arc<NetStats>,
    /// Nodes crashed and when they restart.
    down: BTreeMap<u64, Duration>,
    /// The node whose disk will lose its power inside a commit, and until when.
    armed: Option<(u64, Duration)>,
    /// Links cut and when they heal.
    cut: Vec<(String, String)>,
    heal_at: Duration,
    /// Every leader seen: (term, node id).
    leaders: BTreeSet<(u64, u64)>,
    /// The entry (log id) applied at each index seen applied, and the first node seen doing so.
    applied: BTreeMap<u64, (u64, LogId)>,
    /// A leader not seen before, since the chaos loop last looked.
    new_leader: bool,
    /// Writes that shared an entry with others, on boots since crashed.
    shared_writes: u64,
    /// Read indexes the leader lease answered and declined, on boots since crashed.
    lease_counts: (u64, u64),
    /// Early appends accepted by followers, of boots that have crashed.
    early_accepted: u64,
    /// Leaders that crashed while a follower's log ended in one of their entries, with the
    /// highest such index: the leader's next boot shows whether it lost that entry.
    crashed_leaders: BTreeMap<u64, u64>,
    faults: Counts,
    /// What happened when, for the failure message of a read found not linearizable.
    events: Vec<(Duration, String)>,
}

impl World<'_> {
    fn new(seed: u64) -> Self {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(Duration::from_secs(3600))
            .tick_duration(Duration::from_millis(1))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(10))
            // A connection per RPC: let a burst of them queue at a listener.
            .tcp_capacity(4096)
            .build();
        let registry = Registry::default();
        let stats = Arc::new(NetStats::default());
        let writes = Writes::default();
        let mut disks = BTreeMap::new();
        for id in 1..=NODES {
            let disk = SimDisk::new();
            disks.insert(id, disk.clone());
            let (registry, stats) = (registry.clone(), stats.clone());
            sim.host(host(id), move || {
                node::run(id, disk.clone(), registry.clone(), stats.clone())
            });
        }
        let until = CHAOS - Duration::from_secs(1);
        for client in 0..CLIENTS {
            sim.client(
                format!("client{client}"),
                workload::run(client, seed, writes.clone(), WRITES_PER_CLIENT, until),
            );
        }
        let reads = Reads::default();
        for reader in 0..READERS {
            sim.client(
                format!("reader{reader}"),
                workload::read(reader, seed, CLIENTS, reads.clone(), until),
            );
        }
        World {
            seed,
            sim,
            rng: SmallRng::seed_from_u64(seed),
            reactive: SmallRng::seed_from_u64(!seed),
            disks,
            registry,
            writes,
            reads,
            stats,
            down: BTreeMap::new(),
            armed: None,
            cut: Vec::new(),
            heal_at: Duration::ZERO,
            leaders: BTreeSet::new(),
            shared_writes: 0,
            lease_counts: (0, 0),
            early_accepted: 0,
            crashed_leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            new_leader: false,
            faults: Counts::new(),
            events: Vec::new(),
        }
    }

    fn now(&self) -> Duration {
        self.sim.elapsed()
    }

    /// One tick of the simulation, then the state-machine safety check. True once the clients
    /// are done.
    fn step(&mut self) -> Result<bool, String> {
        let done = self
            .sim
            .step()
            .map_err(|e| format!("at {:?}: {e}", self.now()))?;
        self.observe()?;
        self.check_crashed_leaders();
        Ok(done)
    }

    /// Records every leader seen, and checks that no two nodes ever apply different entries at
    /// one index. (Two leaders in one term are no violation: openraft 0.9, without its
    /// `single-term-leader` feature, identifies a leader by term and node id, and a node may vote
    /// for a higher node id in the same term.)
    fn observe(&mut self) -> Result<(), String> {
        let nodes = self.registry.lock();
        for (id, running) in nodes.iter() {
            let metrics = running.raft.metrics();
            let metrics = metrics.borrow();
            if let Some(applied) = metrics.last_applied {
                let first = *self.applied.entry(applied.index).or_insert((*id, applied));
                if first.1 != applied {
                    return Err(format!(
                        "node {} applied {applied} but node {} applied {} at the same index (at \
                         {:?})",
                        id,
                        first.0,
                        first.1,
                        self.sim.elapsed()
                    ));
                }
            }
            if metrics.state == ServerState::Leader
                && self.leaders.insert((metrics.current_term, *id))
            {
                self.new_leader = true;
                // (Not `self.event`: the registry is borrowed.)
                self.events.push((
                    self.sim.elapsed(),
                    format!(
                        "node {id} leads term {} (last log {:?}, applied {:?})",
                        metrics.current_term, metrics.last_log_index, metrics.last_applied
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The node that leads in the highest term among the running ones.
    fn leader(&self) -> Option<u64> {
        let nodes = self.registry.lock();
        nodes
            .iter()
            .filter_map(|(id, running)| {
                let metrics = running.raft.metrics();
                let metrics = metrics.borrow();
                (metrics.state == ServerState::Leader).then_some((metrics.current_term, *id))
            })
            .max()
            .map(|(_, id)| id)
    }

    /// Runs until every node is up and one of them leads.
    fn warm_up(&mut self) -> Result<(), String> {
        while self.now() < WARM_UP_LIMIT {
            self.step()?;
            if self.registry.lock().len() == NODES as usize && self.leader().is_some() {
                return Ok(());
            }
        }
        Err("no leader elected at start".into())
    }

    /// Runs with faults until [`CHAOS`]: at most one partition and one crashed node at a time
    /// (all of them during a whole-cluster power loss), each healed after a random while.
    fn chaos(&mut self) -> Result<(), String> {
        let mut next_fault = self.now() + millis(&mut self.rng, 100..1000);
        // Every seed starts with a partition isolating the leader, then a crash.
        let mut first_rolls = vec![55, 0];
        while self.now() < CHAOS {
            self.step()?;
            let now = self.now();
            if !self.cut.is_empty() && now >= self.heal_at {
                self.heal_links();
            }
            let due: Vec<u64> = self
                .down
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                self.restart(id);
            }
            self.crash_tripped(now)?;
            if std::mem::take(&mut self.new_leader)
                && self.down.is_empty()
                && self.armed.is_none()
                && self.reactive.random_bool(0.3)
            {
                // An election's votes and the new term's first entries are the freshest durable
                // state there is: lose the power on any node right now.
                let victim = self.reactive.random_range(1..=NODES);
                let how = power_loss(&mut self.reactive);
                self.crash(victim, how)?;
                self.faults.bump(AFTER_ELECTION);
                let restart = now + millis(&mut self.reactive, 100..1500);
                self.down.insert(victim, restart);
            }
            if now >= next_fault {
                let roll = self.rng.random_range(0..100);
                let roll = first_rolls.pop().unwrap_or(roll);
                let choices = SmallRng::seed_from_u64(self.rng.random());
                self.inject(roll, choices)?;
                next_fault = now + millis(&mut self.rng, 200..1200);
            }
        }
        Ok(())
    }

    /// Injects the fault `roll` (0..100) picks, if it is compatible with those under way,
    /// making its choices (victims, durations) with `rng`.
    fn inject(&mut self, roll: u32, mut rng: SmallRng) -> Result<(), String> {
        let now = self.now();
        match roll {
            0..=44 if self.cut.is_empty() => {
                let leader = self.leader();
                let victim = match leader {
                    Some(leader) if roll < 30 => {
                        self.faults.bump(LEADER_ISOLATIONS);
                        leader
                    }
                    _ => rng.random_range(1..=NODES),
                };
                // From the other nodes always; from the clients too, sometimes.
                let mut others: Vec<String> =
                    (1..=NODES).filter(|id| *id != victim).map(host).collect();
                if rng.random_bool(0.5) {
                    others.extend((0..CLIENTS).map(|c| format!("client{c}")));
                }
                for other in others {
                    self.cut_link(host(victim), other);
                }
                self.faults.bump(PARTITIONS);
                self.heal_at = now + millis(&mut rng, 300..3000);
            }
            45..=54 if self.cut.is_empty() => {
                // Two nodes cannot talk; both still reach the third.
                let a = rng.random_range(1..=NODES);
                let b = a % NODES + 1;
                self.cut_link(host(a), host(b));
                self.faults.bump(PARTITIONS);
                self.heal_at = now + millis(&mut rng, 300..3000);
            }
            55..=74 if self.down.is_empty() && self.armed.is_none() => {
                let victim = self.crash_victim(&mut rng);
                let how = match rng.random_range(0..100) {
                    0..=79 => power_loss(&mut rng),
                    _ => Crash::Kill,
                };
                self.crash(victim, how)?;
                let restart = now + millis(&mut rng, 100..2500);
                self.down.insert(victim, restart);
            }
            75..=84 if self.down.is_empty() && self.armed.is_none() => {
                // Within its next few commits: a leader commits every write, a follower every
                // append it receives.
                let victim = self.crash_victim(&mut rng);
                let syncs = rng.random_range(1..6);
                let torn = rng.random_bool(0.5).then(|| rng.random());
                self.disks[&victim].arm_power_loss(syncs, torn);
                self.armed = Some((victim, now + Duration::from_secs(3)));
            }
            85..=89
                if self.down.is_empty() && self.armed.is_none() && self.faults.get(FULL) < 2 =>
            {
                self.faults.bump(FULL);
                for id in 1..=NODES {
                    let how = power_loss(&mut rng);
                    self.crash(id, how)?;
                    let restart = now + millis(&mut rng, 100..1500);
                    self.down.insert(id, restart);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The leader half the time, else any node.
    fn crash_victim(&self, rng: &mut SmallRng) -> u64 {
        let (prefer_leader, any) = (rng.random_bool(0.5), rng.random_range(1..=NODES));
        match self.leader() {
            Some(leader) if prefer_leader => leader,
            _ => any,
        }
    }

    /// Crashes the node whose armed power loss happened (its disk is already dead), or gives
    /// up on one that did not happen in time.
    fn crash_tripped(&mut self, now: Duration) -> Result<(), String> {
        let Some((id, until)) = self.armed else {
            return Ok(());
        };
        let disk = self.disks[&id].clone();
        if disk.tripped() {
            self.armed = None;
            self.crash(id, Crash::InCommit)?;
            let restart = now + millis(&mut self.reactive, 100..2500);
            self.down.insert(id, restart);
        } else if now >= until {
            disk.disarm();
            self.armed = None;
        }
        Ok(())
    }

    fn cut_link(&mut self, a: String, b: String) {
        self.event(format!("link cut: {a} - {b}"));
        self.sim.partition(a.as_str(), b.as_str());
        self.cut.push((a, b));
    }

    fn heal_links(&mut self) {
        self.event(format!("links healed: {:?}", self.cut));
        for (a, b) in std::mem::take(&mut self.cut) {
            self.sim.repair(a.as_str(), b.as_str());
        }
    }

    /// Crashes node `id`: first the disk loses its power (or the process dies), so nothing the
    /// dying instance does afterwards reaches the disk; then turmoil drops the host's runtime
    /// and with it every task and the store. The store must really be gone before the node
    /// boots again on what the disk kept.
    fn crash(&mut self, id: u64, how: Crash) -> Result<(), String> {
        self.event(format!("node {id} crashes: {how:?}"));
        if let Some(index) = self.followers_entry_of_leader(id) {
            self.crashed_leaders.insert(id, index);
        }
        let running = self.registry.lock().remove(&id);
        let disk = &self.disks[&id];
        match how {
            Crash::PowerLoss => disk.power_loss(),
            Crash::Torn(seed) => disk.power_loss_torn(seed),
            Crash::Kill => disk.kill(),
            Crash::InCommit => {}
        }
        self.sim.crash(host(id));
        if let Some(running) = running {
            self.shared_writes += running.writes.shared_writes();
            let (served, declined) = running.lease.counts();
            self.lease_counts.0 += served;
            self.lease_counts.1 += declined;
            self.early_accepted += running.early.counts().accepted;
            let (store, log) = (running.store.clone(), running.log.clone());
            drop(running);
            if store.upgrade().is_some() || log.upgrade().is_some() {
                return Err(format!("node {id}'s store outlived its crash"));
            }
        }
        self.faults.bump(CRASHES);
        match how {
            Crash::PowerLoss => self.faults.bump(POWER_LOSSES),
            Crash::Torn(_) => self.faults.bump(TORN),
            Crash::Kill => self.faults.bump(KILLS),
            Crash::InCommit => self.faults.bump(IN_COMMIT),
        }
        Ok(())
    }

    /// If node `id` leads: the highest index at which another node's log ends in an entry of
    /// its term (an entry it sent, early or not).
    fn followers_entry_of_leader(&self, id: u64) -> Option<u64> {
        let nodes = self.registry.lock();
        let metrics = nodes.get(&id)?.raft.metrics().borrow().clone();
        if metrics.state != ServerState::Leader {
            return None;
        }
        nodes
            .iter()
            .filter(|(other, _)| **other != id)
            .filter_map(|(_, running)| {
                let bytes = running.log.upgrade()?.last().ok()??;
                let entry: Entry = serde_json::from_slice(&bytes).ok()?;
                let leader = entry.log_id.leader_id;
                (leader.term == metrics.current_term && leader.node_id == id)
                    .then_some(entry.log_id.index)
            })
            .max()
    }

    /// Counts a crashed leader whose new boot lacks an entry a follower held when it crashed:
    /// with early appends, a follower can hold an entry its leader never made durable.
    fn check_crashed_leaders(&mut self) {
        if self.crashed_leaders.is_empty() {
            return;
        }
        let nodes = self.registry.lock();
        let mut lost = 0;
        self.crashed_leaders.retain(|id, held| match nodes.get(id) {
            Some(running) => {
                if running.boot_last_index.is_none_or(|last| last < *held) {
                    lost += 1;
                }
                false
            }
            None => true,
        });
        drop(nodes);
        self.faults.add(LEADER_LOST, lost);
    }

    fn restart(&mut self, id: u64) {
        self.event(format!("node {id} restarts"));
        self.down.remove(&id);
        self.sim.bounce(host(id));
    }

    fn heal_everything(&mut self) -> Result<(), String> {
        if let Some((id, _)) = self.armed.take() {
            let disk = self.disks[&id].clone();
            disk.disarm();
            // It may have happened after the last step looked (storage runs on real threads).
            if disk.tripped() {
                self.crash(id, Crash::InCommit)?;
                self.down.insert(id, self.now());
            }
        }
        self.heal_links();
        let down: Vec<u64> = self.down.keys().copied().collect();
        for id in down {
            self.restart(id);
        }
        Ok(())
    }

    /// Records what happened now, for the failure message of a read check.
    fn event(&mut self, what: String) {
        let at = self.sim.elapsed();
        self.events.push((at, what));
    }

    /// Checks the readers' history against the writers' (`reads.rs`).
    fn check_reads(&self) -> Result<(), String> {
        let writes = self.writes.lock().clone();
        let reads = self.reads.lock().clone();
        reads::check(&writes, &reads).map(|_| ()).map_err(|e| {
            let events: Vec<String> = self
                .events
                .iter()
                .map(|(t, e)| format!("{t:?} {e}"))
                .collect();
            format!(
                "reads are not linearizable: {e}\nevents:\n{}",
                events.join("\n")
            )
        })
    }

    /// Lets the clients finish their last writes.
    fn finish_clients(&mut self) -> Result<(), String> {
        let limit = self.now() + CLIENTS_LIMIT;
        while self.now() < limit {
            if self.step()? {
                return Ok(());
            }
        }
        Err("the clients did not finish".into())
    }

    /// Runs until all nodes follow one leader that has applied its whole log, and all of them
    /// have applied as far.
    fn converge(&mut self, when: &str) -> Result<(), String> {
        let limit = self.now() + CONVERGE_LIMIT;
        while self.now() < limit {
            self.step()?;
            if self.sim.elapsed().as_millis() % 50 == 0 && self.converged() {
                return Ok(());
            }
        }
        Err(format!(
            "no convergence {when} within {CONVERGE_LIMIT:?}: {}",
            self.describe()
        ))
    }

    fn converged(&self) -> bool {
        let nodes = self.registry.lock();
        if nodes.len() != NODES as usize {
            return false;
        }
        let metrics: Vec<_> = nodes
            .values()
            .map(|r| r.raft.metrics().borrow().clone())
            .collect();
        let Some(leader) = metrics.iter().find(|m| m.state == ServerState::Leader) else {
            return false;
        };
        let applied = leader.last_applied.map(|l| l.index);
        leader.last_log_index == applied
            && metrics.iter().all(|m| {
                m.current_leader == Some(leader.id)
                    && m.current_term == leader.current_term
                    && m.last_applied == leader.last_applied
            })
    }

    fn describe(&self) -> String {
        let nodes = self.registry.lock();
        let states: Vec<String> = nodes
            .values()
            .map(|r| {
                let m = r.raft.metrics().borrow().clone();
                format!(
                    "n{} {:?} term {} leader {:?} last log {:?} applied {:?} snapshot {:?} purged {:?}",
                    m.id,
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.snapshot.map(|l| l.index),
                    m.purged.map(|l| l.index)
                )
            })
            .collect();
        format!("{} running: {}", nodes.len(), states.join("; "))
    }

    /// The end-state checks, on every node's store.
    fn check(&self, when: &str) -> Result<(), String> {
        let stores: Vec<(u64, Arc<Store>)> = self
            .registry
            .lock()
            .iter()
            .filter_map(|(id, r)| Some((*id, r.store.upgrade()?)))
            .collect();
        if stores.len() != NODES as usize {
            return Err(format!("{when}: only {} stores open", stores.len()));
        }
        let written = self.writes.by_key();
        let mut reference: Option<(u64, Vec<u8>, Option<Vec<u8>>)> = None;
        for (id, store) in &stores {
            let (state, applied) = store
                .export_state(APPLIED_KEY)
                .map_err(|e| format!("{when}: node {id}: export: {e}"))?;
            let view = store
                .read()
                .map_err(|e| format!("{when}: node {id}: read: {e}"))?;
            let read_err = |e: keystead_store::StoreError| format!("{when}: node {id}: {e}");
            // (a) Every acknowledged write is there, as written; no write that never reached a
            // node is.
            for ((_, version), write) in &written {
                let stored = view
                    .version(&workload::vault(), ObjectKind::Secret, &write.name, version)
                    .map_err(read_err)?;
                match (&write.outcome, &stored) {
                    (Outcome::Acked, None) => {
                        return Err(format!(
                            "{when}: node {id} lost acknowledged write {}/{version}",
                            write.name
                        ))
                    }
                    (Outcome::Rejected, Some(_)) => {
                        return Err(format!(
                            "{when}: node {id} has {}/{version}, which never reached a node",
                            write.name
                        ))
                    }
                    (Outcome::Refused(why), _) => {
                        return Err(format!(
                            "{when}: write {}/{version} was refused: {why}",
                            write.name
                        ))
                    }
                    (Outcome::Pending, _) => {
                        return Err(format!(
                            "{when}: write {}/{version} never got an outcome",
                            write.name
                        ))
                    }
                    (_, Some(record)) if *record != write.version => {
                        return Err(format!(
                            "{when}: node {id} holds {}/{version} with other contents",
                            write.name
                        ))
                    }
                    _ => {}
                }
            }
            // (c) Nothing is there that no client wrote.
            let mut after = None;
            loop {
                let page = view
                    .list_objects(
                        &workload::vault(),
                        ObjectKind::Secret,
                        false,
                        after.as_deref(),
                        100,
                    )
                    .map_err(read_err)?;
                for (object, _) in &page.items {
                    let count = object.version_count as usize;
                    let (versions, _) = view
                        .versions_in_order(
                            &workload::vault(),
                            ObjectKind::Secret,
                            &object.name,
                            0,
                            count + 1,
                        )
                        .map_err(read_err)?;
                    if versions.len() != count
                        || versions.last().map(|v| v.version.as_str())
                            != Some(object.latest_version())
                    {
                        return Err(format!(
                            "{when}: node {id} lists {} versions of {}, ending in {:?}, and its \
                             record says {count}, the latest {}",
                            versions.len(),
                            object.name,
                            versions.last().map(|v| &v.version),
                            object.latest_version()
                        ));
                    }
                    for version in versions.iter().map(|v| &v.version) {
                        if !written.contains_key(&(object.name.key(), version.clone())) {
                            return Err(format!(
                                "{when}: node {id} has {}/{version}, which no client wrote",
                                object.name
                            ));
                        }
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            // (b) Every node's state is the same, at the same applied position.
            match &reference {
                None => reference = Some((*id, state, applied)),
                Some((first, first_state, first_applied)) => {
                    if *first_applied != applied || *first_state != state {
                        return Err(format!(
                            "{when}: nodes {first} and {id} differ: applied {} vs {}, state of \
                             {} vs {} bytes",
                            show(first_applied),
                            show(&applied),
                            first_state.len(),
                            state.len()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node loses its power at once (some torn), then all boot again.
    fn power_cycle_everyone(&mut self) -> Result<(), String> {
        for id in 1..=NODES {
            let how = power_loss(&mut self.rng);
            self.crash(id, how)?;
        }
        for id in 1..=NODES {
            self.restart(id);
        }
        Ok(())
    }

    fn report(&self, wall: Duration) -> Report {
        let writes = self.writes.lock();
        let count = |wanted: Outcome| writes.iter().filter(|w| w.outcome == wanted).count();
        let mut counts = self.faults.clone();
        counts.add(ACKED, count(Outcome::Acked) as u64);
        counts.add(TERMS, self.leaders.len() as u64);
        let installed = self.stats.snapshots_installed.load(Ordering::Relaxed);
        counts.add(SNAPSHOTS, installed);
        counts.add(
            FORWARDED,
            self.stats.forwarded_writes.load(Ordering::Relaxed),
        );
        let lost = self.disks.values().map(|d| d.stats().lost_changes).sum();
        counts.add(LOST, lost);
        let running: u64 = (self.registry.lock().values())
            .map(|r| r.writes.shared_writes())
            .sum();
        counts.add(SHARED, self.shared_writes + running);
        let reads = self.reads.lock();
        counts.add(READS, reads.len() as u64);
        let on_followers = reads
            .iter()
            .filter(|r| r.trace.via_leader.is_some())
            .count();
        counts.add(FOLLOWER_READS, on_followers as u64);
        drop(reads);
        let (mut served, mut declined) = self.lease_counts;
        for running in self.registry.lock().values() {
            let (s, d) = running.lease.counts();
            served += s;
            declined += d;
        }
        counts.add(LEASE_READS, served);
        counts.add(HEARTBEAT_READS, declined);
        let early: u64 = (self.registry.lock().values())
            .map(|r| r.early.counts().accepted)
            .sum();
        counts.add(EARLY, self.early_accepted + early);
        Report {
            seed: self.seed,
            writes: writes.len(),
            unknown: count(Outcome::Unknown),
            rejected: count(Outcome::Rejected),
            counts,
            simulated: self.sim.elapsed(),
            wall,
        }
    }
}

fn millis(rng: &mut SmallRng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

/// A power loss, clean or torn, half the time each.
fn power_loss(rng: &mut SmallRng) -> Crash {
    let (torn, seed) = (rng.random_bool(0.5), rng.random());
    match torn {
        true => Crash::Torn(seed),
        false => Crash::PowerLoss,
    }
}

fn show(applied: &Option<Vec<u8>>) -> String {
    match applied {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => "nothing".into(),
    }
}

struct Report {
    seed: u64,
    writes: usize,
    unknown: usize,
    rejected: usize,
    counts: Counts,
    simulated: Duration,
    wall: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} writes ({} unknown, {} never sent); {}; {:.1} s simulated in {:.1} s",
            self.seed,
            self.writes,
            self.unknown,
            self.rejected,
            self.counts,
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64()
        )
    }
}

/// Across all seeds, every kind of fault must have happened, and bitten.
fn assert_every_fault_happened(totals: &Counts) {
    for (what, count) in &totals.0 {
        assert!(
            *count > 0,
            "no {what} in any seed: the simulation is vacuous"
        );
    }
}
