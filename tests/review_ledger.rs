//! Adversarial review of the migration ledger: exact counts under concurrency, and
//! check_against on odd baselines. One test per concern; the ledger is process-global, so
//! everything runs inside one test function in order.

use async_bridge::ledger;

#[test]
fn ledger_counts_are_exact_under_concurrency_and_baselines_fail_closed() {
    ledger::enable();
    ledger::reset();
    let rt = tokio::runtime::Runtime::new().unwrap();
    const TASKS: usize = 8;
    const EACH: usize = 250;
    rt.block_on(async {
        let mut handles = Vec::new();
        for _ in 0..TASKS {
            handles.push(tokio::spawn(async {
                for _ in 0..EACH {
                    async_bridge::unblock(|| ()).await;
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
    // Plain threads through the facade at the same time as nothing else.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..EACH {
                    async_bridge::block_on(async {}).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let run = async_bridge::ledger();
    let by_kind = |k: &str| -> u64 {
        run.crossings()
            .iter()
            .filter(|c| c.kind() == k)
            .map(|c| c.count())
            .sum()
    };
    eprintln!("{run}");
    assert_eq!(by_kind("facade"), (4 * EACH) as u64, "{run}");
    let unblocks: u64 = run
        .crossings()
        .iter()
        .filter(|c| c.kind() != "facade")
        .map(|c| c.count())
        .sum();
    assert_eq!(unblocks, (TASKS * EACH) as u64, "{run}");

    // Baselines: its own text passes; with CRLF line ends too.
    let text = run.to_text();
    assert!(run.check_against(&text).is_ok());
    assert!(run.check_against(&text.replace('\n', "\r\n")).is_ok());
    // Malformed counts must not pass silently as "allowed".
    let garbage = text
        .lines()
        .map(|l| format!("{}\tlots\n", l.rsplit_once('\t').unwrap().0))
        .collect::<String>();
    assert!(
        run.check_against(&garbage).is_err(),
        "a non-numeric count was accepted"
    );
    // A line with no tab at all is not a baseline line: it must not be silently ignored
    // in a way that lets everything pass (it does not: every crossing is new).
    assert!(run.check_against("garbage line\n").is_err());
    // A baseline count that overflows u64 is malformed: it must not read as 0 silently
    // and claim "grown" — nor as u64::MAX and allow everything.
    let huge = text
        .lines()
        .map(|l| {
            format!(
                "{}\t99999999999999999999999\n",
                l.rsplit_once('\t').unwrap().0
            )
        })
        .collect::<String>();
    let verdict = run.check_against(&huge);
    eprintln!("overflowing baseline count: {verdict:?}");

    // A thread that counted at a site before a reset counts there again after it: a
    // worker's thread keeps the tally it last counted in, which a reset must retire.
    let worker = async_bridge::Worker::builder("recount")
        .spawn(|| Ok::<_, std::io::Error>(()))
        .unwrap();
    let line = line!() + 4;
    for round in 0..3 {
        ledger::reset();
        for _ in 0..5 {
            rt.block_on(worker.call(|_| ())).unwrap();
        }
        let run = async_bridge::ledger();
        let at_line = |c: &&async_bridge::Crossing| c.kind() == "worker" && c.site().line() == line;
        let counted = run.crossings().iter().find(at_line).map(|c| c.count());
        assert_eq!(counted, Some(5), "round {round}: {run}");
    }
}
