//! Matching configurations while later pages still arrive.
//!
//! A client's configurations can only be matched once all of them are in: two that want the
//! same target both stay unlinked, so one arriving late can undo another's link. Nothing in
//! the API promises that a client's configurations come together; but listings sorted by id
//! mostly hold them on neighbouring pages. So, as pages arrive, a client whose records stopped
//! coming (every page up to the one after its last has arrived) is matched at once, in
//! batches of whole clients, and its plan staged, while the fetch goes on.
//!
//! That is a guess, checked: a record that arrives later for a client already matched, or an
//! id that two pages both list (whichever copy stays, it may not be the one a batch read),
//! makes the whole batch void. Its plan is taken back and its clients are matched after the
//! last page, from what was staged, with every client that was never matched early. The
//! result is therefore the one matching after the last page gives, whatever the order of the
//! listing; the order only decides how much is matched early.
//!
//! Memory stays bounded: records wait here only until their client is ready, at most
//! [`Speculation::new`]'s `held` of them; past that, early matching stops for the rest of the
//! sync and everything not yet matched is matched after the last page.

use std::collections::{BTreeSet, HashMap, HashSet};

use scopable_store::runs::RunCounts;
use scopable_store::staging::{Received, SeenRecord, StagedPage};

/// A client's records waiting for the client to be ready.
struct Waiting {
    /// The highest page that held one of them.
    last_page: u32,
    records: Vec<(String, SeenRecord)>,
}

/// A batch matched early.
struct Batch {
    clients: Vec<String>,
    counts: RunCounts,
    void: bool,
}

/// The state of early matching over one listing.
pub(crate) struct Speculation {
    /// Records of one batch (whole clients, theirs and their Scopable configurations).
    limit: usize,
    /// Most records waiting at once.
    held: usize,
    /// Whether early matching goes on.
    on: bool,
    /// Every page up to this one has arrived.
    complete_to: u32,
    /// Pages arrived beyond `complete_to`.
    beyond: BTreeSet<u32>,
    waiting: HashMap<String, Waiting>,
    waiting_records: usize,
    /// Scopable configurations per client (what a batch also holds).
    scopable: HashMap<String, u64>,
    /// Clients matched early -> their batch.
    matched: HashMap<String, usize>,
    batches: Vec<Batch>,
    /// Clients never to be matched early again (their batch is void, or it was never made).
    after_the_end: HashSet<String>,
    /// Ids two pages listed.
    listed_twice: Vec<String>,
}

/// A batch to match early ([`Speculation::take_ready`]).
pub(crate) struct Ready {
    /// Its number, for [`Speculation::matched`].
    pub batch: usize,
    /// Its clients.
    pub clients: Vec<String>,
    /// Their records, each client's in the order received.
    pub records: Vec<(String, SeenRecord)>,
}

/// What early matching left for after the last page ([`Default`]: nothing was matched early).
#[derive(Default)]
pub(crate) struct Outcome {
    /// The counts of each batch that stands.
    pub counts: Vec<RunCounts>,
    /// The clients of the batches that stand: their plan is staged.
    pub matched: HashSet<String>,
    /// The clients of void batches: their staged plan must be taken back.
    pub void_clients: Vec<String>,
    /// Ids two pages listed: their staged plan must be taken back too.
    pub listed_twice: Vec<String>,
    /// How many batches were matched early, and how many of them stand.
    pub batches: (usize, usize),
}

impl Speculation {
    /// Early matching in batches of `limit` records, holding at most `held` records waiting;
    /// `scopable` counts each client's Scopable configurations.
    pub(crate) fn new(limit: usize, held: usize, scopable: HashMap<String, u64>) -> Speculation {
        Speculation {
            limit,
            held,
            on: true,
            complete_to: 0,
            beyond: BTreeSet::new(),
            waiting: HashMap::new(),
            waiting_records: 0,
            scopable,
            matched: HashMap::new(),
            batches: Vec::new(),
            after_the_end: HashSet::new(),
            listed_twice: Vec::new(),
        }
    }

    /// Takes in what staging page `page` found.
    pub(crate) fn observe(&mut self, page: u32, staged: StagedPage) {
        // Both copies of an id listed twice: the client of the copy staged before, and that of
        // this page's copy. Neither's records may stay as read.
        let twice: HashSet<&str> = staged.clashes.iter().map(|(id, _)| id.as_str()).collect();
        let void: Vec<String> = staged
            .kept
            .iter()
            .filter(|r| twice.contains(r.source_id.as_str()))
            .map(|r| r.client.clone())
            .collect();
        for (id, earlier_client) in staged.clashes {
            self.leave_to_the_end(&earlier_client);
            self.listed_twice.push(id);
        }
        for client in void {
            self.leave_to_the_end(&client);
        }
        for Received {
            source_id,
            client,
            record,
        } in staged.kept
        {
            if client.is_empty() {
                // Under no linked organization: matched after the last page, as always.
                continue;
            }
            if self.matched.contains_key(&client) {
                // Late: the batch that matched this client is void.
                self.leave_to_the_end(&client);
                continue;
            }
            if !self.on || self.after_the_end.contains(&client) {
                continue;
            }
            let waiting = self.waiting.entry(client).or_insert_with(|| Waiting {
                last_page: page,
                records: Vec::new(),
            });
            waiting.last_page = waiting.last_page.max(page);
            waiting.records.push((source_id, record));
            self.waiting_records += 1;
        }
        if self.waiting_records > self.held {
            // The listing does not hold clients together: stop guessing, and free what waits.
            self.on = false;
            self.waiting.clear();
            self.waiting_records = 0;
        }
        self.beyond.insert(page);
        while self.beyond.remove(&(self.complete_to + 1)) {
            self.complete_to += 1;
        }
    }

    /// The next batch to match early: whole clients whose every page up to the one after
    /// their last has arrived, once they make at least a quarter of a batch; `None` while
    /// too few are ready. Its clients count as matched from now on (a record arriving for
    /// one while the batch is matched voids it); [`Speculation::matched`] gives its counts.
    pub(crate) fn take_ready(&mut self) -> Option<Ready> {
        if !self.on {
            return None;
        }
        let mut ready: Vec<(&String, u64)> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.last_page < self.complete_to)
            .map(|(client, w)| {
                let size = w.records.len() as u64 + self.scopable.get(client).copied().unwrap_or(0);
                (client, size)
            })
            .collect();
        ready.sort();
        let mut size = 0u64;
        let mut clients: Vec<String> = Vec::new();
        for (client, n) in ready {
            if size >= self.limit as u64 {
                break;
            }
            size += n;
            clients.push(client.clone());
        }
        if size < (self.limit as u64 / 4).max(1) {
            return None;
        }
        let batch = self.batches.len();
        let mut records = Vec::new();
        for client in &clients {
            if let Some(w) = self.waiting.remove(client) {
                self.waiting_records -= w.records.len();
                records.extend(w.records);
            }
            self.matched.insert(client.clone(), batch);
        }
        self.batches.push(Batch {
            clients: clients.clone(),
            counts: RunCounts::default(),
            void: false,
        });
        Some(Ready {
            batch,
            clients,
            records,
        })
    }

    /// The counts of batch `batch`, once matched and its plan staged.
    pub(crate) fn matched(&mut self, batch: usize, counts: RunCounts) {
        if let Some(b) = self.batches.get_mut(batch) {
            b.counts = counts;
        }
    }

    /// Leaves `client` to be matched after the last page, voiding its early batch if it had
    /// one.
    fn leave_to_the_end(&mut self, client: &str) {
        if client.is_empty() {
            return;
        }
        if let Some(w) = self.waiting.remove(client) {
            self.waiting_records -= w.records.len();
        }
        self.after_the_end.insert(client.to_string());
        if let Some(&batch) = self.matched.get(client) {
            self.void_batch(batch);
        }
    }

    fn void_batch(&mut self, batch: usize) {
        if self.batches[batch].void {
            return;
        }
        self.batches[batch].void = true;
        let clients = self.batches[batch].clients.clone();
        for client in clients {
            self.after_the_end.insert(client);
        }
    }

    /// What is left for after the last page.
    pub(crate) fn finish(self) -> Outcome {
        let mut outcome = Outcome {
            counts: Vec::new(),
            matched: HashSet::new(),
            void_clients: Vec::new(),
            listed_twice: self.listed_twice,
            batches: (self.batches.len(), 0),
        };
        for batch in self.batches {
            if batch.void {
                outcome.void_clients.extend(batch.clients);
            } else {
                outcome.batches.1 += 1;
                outcome.counts.push(batch.counts);
                outcome.matched.extend(batch.clients);
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, client: &str) -> Received {
        Received {
            source_id: id.to_string(),
            client: client.to_string(),
            record: SeenRecord {
                name: id.to_string(),
                ..SeenRecord::default()
            },
        }
    }

    fn page(records: &[(&str, &str)]) -> StagedPage {
        StagedPage {
            kept: records.iter().map(|(id, c)| record(id, c)).collect(),
            clashes: Vec::new(),
        }
    }

    /// Batches of one record: every ready client is a batch of its own.
    fn speculation() -> Speculation {
        Speculation::new(1, 100, HashMap::new())
    }

    fn take(s: &mut Speculation) -> Option<(Vec<String>, Vec<String>)> {
        s.take_ready().map(|r| {
            let ids = r.records.iter().map(|(id, _)| id.clone()).collect();
            s.matched(r.batch, RunCounts::default());
            (r.clients, ids)
        })
    }

    #[test]
    fn a_client_is_ready_once_every_page_up_to_the_one_after_its_last_arrived() {
        let mut s = speculation();
        s.observe(1, page(&[("1", "a"), ("2", "b")]));
        // Nothing is ready while page 2 is missing, even with page 3 in.
        assert_eq!(take(&mut s), None);
        s.observe(3, page(&[("5", "c")]));
        assert_eq!(take(&mut s), None);
        s.observe(2, page(&[("3", "b"), ("4", "d")]));
        // Pages 1 to 3 are in: a (last seen on page 1) is ready; b and d (page 2) are too;
        // c (page 3) waits for page 4.
        assert_eq!(take(&mut s), Some((vec!["a".into()], vec!["1".into()])));
        assert_eq!(
            take(&mut s),
            Some((vec!["b".into()], vec!["2".into(), "3".into()]))
        );
        assert_eq!(take(&mut s), Some((vec!["d".into()], vec!["4".into()])));
        assert_eq!(take(&mut s), None);
        // Records under no linked organization are never matched early.
        s.observe(4, page(&[("6", "")]));
        assert_eq!(take(&mut s), Some((vec!["c".into()], vec!["5".into()])));
        s.observe(5, page(&[]));
        assert_eq!(take(&mut s), None);
        let outcome = s.finish();
        assert_eq!(outcome.batches, (4, 4));
        assert!(outcome.void_clients.is_empty());
    }

    #[test]
    fn a_late_record_voids_its_client_s_batch_with_every_client_in_it() {
        // Batches of up to three records.
        let mut s = Speculation::new(3, 100, HashMap::new());
        s.observe(1, page(&[("1", "a"), ("2", "b")]));
        s.observe(2, page(&[("3", "c")]));
        let (clients, _) = take(&mut s).expect("a and b are ready");
        assert_eq!(clients, vec!["a".to_string(), "b".into()]);
        // A record of b arrives late: the batch of a and b is void; c, in no batch yet, is
        // matched early once its records stop coming.
        s.observe(3, page(&[("4", "b"), ("5", "c")]));
        s.observe(4, page(&[]));
        assert_eq!(
            take(&mut s),
            Some((vec!["c".into()], vec!["3".into(), "5".into()]))
        );
        let outcome = s.finish();
        assert_eq!(outcome.batches, (2, 1));
        assert_eq!(outcome.void_clients, vec!["a".to_string(), "b".into()]);
        assert_eq!(outcome.matched, HashSet::from(["c".to_string()]));
    }

    #[test]
    fn a_record_arriving_while_its_batch_is_matched_voids_it() {
        let mut s = speculation();
        s.observe(1, page(&[("1", "a")]));
        s.observe(2, page(&[]));
        let ready = s.take_ready().expect("a is ready");
        // The fetch goes on while the batch is matched.
        s.observe(3, page(&[("2", "a")]));
        s.matched(ready.batch, RunCounts::default());
        let outcome = s.finish();
        assert_eq!(outcome.batches, (1, 0));
        assert_eq!(outcome.void_clients, vec!["a".to_string()]);
    }

    #[test]
    fn an_id_listed_twice_voids_the_batches_of_both_copies() {
        let mut s = speculation();
        s.observe(1, page(&[("1", "a")]));
        s.observe(2, page(&[("2", "b")]));
        assert!(take(&mut s).is_some());
        // Page 3 lists id 1 again, under c: a's early batch is void, and c is left to the end.
        let mut third = page(&[("1", "c"), ("3", "c")]);
        third.clashes.push(("1".into(), "a".into()));
        s.observe(3, third);
        s.observe(4, page(&[]));
        assert_eq!(take(&mut s), Some((vec!["b".into()], vec!["2".into()])));
        assert_eq!(take(&mut s), None, "c is matched after the last page");
        let outcome = s.finish();
        assert_eq!(outcome.void_clients, vec!["a".to_string()]);
        assert_eq!(outcome.listed_twice, vec!["1".to_string()]);
        assert_eq!(outcome.matched, HashSet::from(["b".to_string()]));
    }

    #[test]
    fn too_many_waiting_records_stop_early_matching() {
        let mut s = Speculation::new(1, 2, HashMap::new());
        s.observe(1, page(&[("1", "a"), ("2", "a"), ("3", "b")]));
        s.observe(2, page(&[("4", "c")]));
        assert_eq!(take(&mut s), None);
        assert_eq!(
            s.waiting_records, 0,
            "nothing is held once early matching stops"
        );
        let outcome = s.finish();
        assert_eq!(outcome.batches, (0, 0));
    }

    #[test]
    fn a_batch_waits_for_a_quarter_of_its_size() {
        let mut s = Speculation::new(8, 100, HashMap::from([("b".to_string(), 5)]));
        s.observe(1, page(&[("1", "a")]));
        s.observe(2, page(&[]));
        assert_eq!(take(&mut s), None, "one record is less than a quarter of 8");
        s.observe(3, page(&[("2", "b")]));
        s.observe(4, page(&[]));
        // b counts its 5 Scopable configurations.
        assert_eq!(
            take(&mut s),
            Some((vec!["a".into(), "b".into()], vec!["1".into(), "2".into()]))
        );
    }
}
