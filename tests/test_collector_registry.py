"""collector.registry: hosts and node keys, leases, exactly-once accept, subscriptions, outbox and cursors."""

from __future__ import annotations

import sqlite3

import pytest

from collector.model import AGENT_OWNER, HostEvent, HostEventKind, HostFacts, HostQuery, LossReport, ResultBatch
from collector.registry import AGENT_GROUP_SOURCE, Cursor, Registry, RegistryError, Submission, Verdict
from protocol.messages import Action, Dropped, Mode, Results
from protocol.operator import Targets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path):
    reg = Registry(str(tmp_path / "registry.db"), clock=Clock())
    yield reg
    reg.close()


WEB1 = HostFacts("host-1", "web1", ("10.0.0.1",), "linux", "0.1.0", ("web",))
DB1 = HostFacts("host-2", "db1", ("10.0.0.2",), "linux", "0.1.0", ("db",))


def connect(registry: Registry, facts: HostFacts = WEB1, *, stream: str = "s1", acked: int = 0):
    registry.enroll(facts)
    return registry.acquire(facts, stream=stream, acked_seq=acked, collector_id="c1", ttl=90)


def batch(seq: int, *, subscription: str | None = None, rows: int = 1, name: str = "procs") -> Results:
    return Results(seq, subscription, name, ("pid",), tuple((Action.ADDED, (i,)) for i in range(rows)), 0, 0, 5.0)


def results_in(registry: Registry) -> list[ResultBatch]:
    return [i for i in registry.read(0, 10_000) if isinstance(i, ResultBatch)]


# -- hosts and credentials ------------------------------------------------------------------


def test_node_keys_are_random_and_stored_only_as_hashes(registry, tmp_path):
    key = registry.enroll(WEB1)
    assert len(key) >= 40
    assert registry.authenticate("host-1", key) is True
    assert registry.authenticate("host-1", key + "x") is False
    assert registry.authenticate("nobody", key) is False
    raw = (tmp_path / "registry.db").read_bytes() + (tmp_path / "registry.db-wal").read_bytes()
    assert key.encode() not in raw
    again = registry.enroll(WEB1)  # enrolling again (a lost key) replaces the key
    assert again != key and registry.authenticate("host-1", key) is False and registry.authenticate("host-1", again)


def test_revoked_host_cannot_authenticate_enroll_or_lease(registry):
    key = registry.enroll(WEB1)
    host = registry.revoke("web1")
    assert host.revoked and host.host_id == "host-1"
    assert registry.authenticate("host-1", key) is None  # known key, revoked host: told so
    assert registry.authenticate("host-1", "guess") is False
    with pytest.raises(RegistryError, match="host host-1 is revoked"):
        registry.enroll(WEB1)
    with pytest.raises(RegistryError, match="revoked"):
        registry.acquire(WEB1, stream="s", acked_seq=0, collector_id="c1", ttl=90)


def test_revoke_needs_an_unambiguous_name(registry):
    registry.enroll(WEB1)
    registry.enroll(HostFacts("host-3", "web1"))
    with pytest.raises(RegistryError, match="hostname 'web1' names 2 hosts"):
        registry.revoke("web1")
    with pytest.raises(RegistryError, match="no enrolled host with id or hostname 'nope'"):
        registry.revoke("nope")
    assert registry.revoke("host-3").host_id == "host-3"


def test_collector_id_is_kept(tmp_path):
    first = Registry(str(tmp_path / "r.db"))
    cid = first.collector_id()
    first.close()
    second = Registry(str(tmp_path / "r.db"))
    assert second.collector_id() == cid and cid.startswith("c-")
    second.close()


# -- leases and sequence marks --------------------------------------------------------------


def test_every_connection_raises_the_epoch_and_fences_the_older_one(registry):
    first = connect(registry)
    second = registry.acquire(WEB1, stream="s1", acked_seq=0, collector_id="c1", ttl=90)
    assert second.epoch == first.epoch + 1
    verdicts = registry.accept([Submission(first, "web1", batch(1), 1.0), Submission(second, "web1", batch(1), 1.0)])
    assert verdicts == [Verdict.FENCED, Verdict.STORED]
    assert registry.host("host-1").last_seq == 1


def test_accept_requires_the_next_sequence(registry):
    lease = connect(registry)
    verdicts = registry.accept(
        [
            Submission(lease, "web1", batch(1), 1.0),
            Submission(lease, "web1", batch(1), 1.0),  # a replay
            Submission(lease, "web1", batch(3), 1.0),  # a gap
            Submission(lease, "web1", batch(2), 1.0),
        ]
    )
    assert verdicts == [Verdict.STORED, Verdict.OUT_OF_ORDER, Verdict.OUT_OF_ORDER, Verdict.STORED]
    assert [b.seq for b in results_in(registry)] == [1, 2]


def test_results_resume_after_the_mark_and_a_new_stream_starts_again(registry):
    lease = connect(registry)
    registry.accept([Submission(lease, "web1", batch(s), 1.0) for s in (1, 2, 3)])
    again = registry.acquire(WEB1, stream="s1", acked_seq=1, collector_id="c1", ttl=90)
    assert again.last_seq == 3  # the agent's older knowledge does not move the mark back
    newer = registry.acquire(WEB1, stream="s1", acked_seq=9, collector_id="c1", ttl=90)
    assert newer.last_seq == 9  # a registry older than the agent's acknowledged sequence catches up
    reinstalled = registry.acquire(WEB1, stream="s2", acked_seq=0, collector_id="c1", ttl=90)
    assert reinstalled.last_seq == 0 and reinstalled.stream == "s2"
    assert registry.accept([Submission(reinstalled, "web1", batch(1), 1.0)]) == [Verdict.STORED]
    assert registry.accept([Submission(newer, "web1", batch(10), 1.0)]) == [Verdict.FENCED]


def test_dropped_moves_the_mark_and_counts_rows(registry):
    lease = connect(registry)
    verdicts = registry.accept(
        [
            Submission(lease, "web1", batch(1), 1.0),
            Submission(lease, "web1", Dropped(2, 6, 5, 500, 4.0), 2.0),
            Submission(lease, "web1", batch(7), 3.0),
        ]
    )
    assert verdicts == [Verdict.STORED] * 3
    host = registry.host("host-1")
    assert host.last_seq == 7 and host.dropped_rows == 500
    (loss,) = [i for i in registry.read(0) if isinstance(i, LossReport)]
    assert (loss.from_seq, loss.to_seq, loss.batches, loss.rows, loss.hostname) == (2, 6, 5, 500, "web1")


def test_release_and_release_all(registry):
    lease = connect(registry)
    other = connect(registry, DB1)
    assert registry.host("host-1").online
    assert registry.release(lease) is True
    assert registry.release(lease) is False
    assert not registry.host("host-1").online
    assert registry.release_all("c1") == 1  # what a crashed run left online
    assert not registry.host("host-2").online
    assert registry.renew([other], 90) == [other]  # released: no longer ours
    events = [(i.host_id, i.event) for i in registry.read(0) if isinstance(i, HostEvent)]
    assert events == [
        ("host-1", HostEventKind.ENROLLED),
        ("host-1", HostEventKind.CONNECTED),
        ("host-2", HostEventKind.ENROLLED),
        ("host-2", HostEventKind.CONNECTED),
        ("host-1", HostEventKind.DISCONNECTED),
        ("host-2", HostEventKind.DISCONNECTED),
    ]


# -- subscriptions and fan-out --------------------------------------------------------------


PROCS = HostQuery("SELECT pid FROM processes", 10)


def test_results_of_the_hosts_own_config_go_out_once(registry):
    lease = connect(registry)
    registry.accept([Submission(lease, "web1", batch(1, name="pack_x_procs"), 7.5)])
    (item,) = results_in(registry)
    assert item.owner == AGENT_OWNER and item.subscription_id is None and item.name == "pack_x_procs"
    assert item.received == 7.5 and item.host_time == 5.0 and item.rows == ((Action.ADDED, (0,)),)
    assert isinstance(item.rows[0][0], Action)


def test_one_host_query_fans_out_to_every_subscriber(registry):
    lease = connect(registry)
    ops = registry.put_subscription("operator", "procs", PROCS, Targets(all=True))
    zeek = registry.put_subscription("zeek:main", "z1", PROCS, Targets(groups=("web",)), route='{"ev": "x"}')
    registry.put_subscription("operator", "dbonly", PROCS, Targets(groups=("db",)))
    assert registry.wanted("host-1") == {PROCS.id: (PROCS, "procs")}
    registry.accept([Submission(lease, "web1", batch(1, subscription=PROCS.id), 1.0)])
    items = results_in(registry)
    assert [(i.subscription_id, i.owner, i.name, i.route) for i in items] == [
        (ops.id, "operator", "procs", ""),
        (zeek.id, "zeek:main", "z1", '{"ev": "x"}'),
    ]
    assert all(i.query_id == PROCS.id and i.seq == 1 for i in items)


def test_results_nobody_subscribes_any_more_move_the_mark_only(registry):
    lease = connect(registry)
    assert registry.accept([Submission(lease, "web1", batch(1, subscription="qgone"), 1.0)]) == [Verdict.STORED]
    assert results_in(registry) == [] and registry.host("host-1").last_seq == 1


def test_group_subscription_reaches_hosts_that_join_later(registry):
    sub = registry.put_subscription("operator", "web-procs", PROCS, Targets(groups=("web",)))
    connect(registry)  # enrolls after the subscription exists
    assert registry.subscriptions_of("host-1") == [sub]
    registry.set_groups("host-2", "zeek", ["web"])  # another source puts a host in the group
    assert registry.subscriptions_of("host-2") == [sub]
    connect(registry, DB1)  # its own config says db; the zeek membership stays
    assert registry.groups_of("host-2") == frozenset({"db", "web"})
    registry.set_groups("host-2", "zeek", [])
    assert registry.subscriptions_of("host-2") == []
    assert registry.groups_of("host-1") == frozenset({"web"})
    assert AGENT_GROUP_SOURCE == "agent"


def test_subscriptions_by_host_name_or_id(registry):
    connect(registry)
    by_name = registry.put_subscription("operator", "a", PROCS, Targets(hosts=("web1",)))
    by_id = registry.put_subscription(
        "operator", "b", HostQuery("SELECT 2", 5, Mode.SNAPSHOT, False), Targets(hosts=("host-1",))
    )
    assert registry.subscriptions_of("host-1") == [by_name, by_id]
    assert set(registry.wanted("host-1")) == {PROCS.id, by_id.query.id}


def test_put_replaces_by_owner_and_name_and_survives_reopen(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    first = reg.put_subscription("operator", "procs", PROCS, Targets(all=True))
    assert reg.put_subscription("operator", "procs", PROCS, Targets(all=True)) == first
    changed = reg.put_subscription("operator", "procs", HostQuery("SELECT 1", 5), Targets(all=True))
    assert changed.id == first.id and changed.query.sql == "SELECT 1"
    assert len(reg.subscriptions()) == 1
    reg.close()
    again = Registry(str(tmp_path / "r.db"))
    assert again.subscriptions() == [changed]
    assert again.remove_subscription("operator", "procs") == changed
    assert again.remove_subscription("operator", "procs") is None
    again.close()


def test_host_query_ids_follow_the_definition():
    assert HostQuery("SELECT 1", 10).id == HostQuery("SELECT 1", 10).id
    assert (
        len(
            {
                HostQuery("SELECT 1", 10).id,
                HostQuery("SELECT 1", 11).id,
                HostQuery("SELECT 1", 10, removed=False).id,
                HostQuery("SELECT 1", 10, Mode.SNAPSHOT).id,
            }
        )
        == 4
    )


def test_an_instance_runs_on_its_own_and_is_kept(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    own = HostQuery(PROCS.sql, PROCS.interval, instance="zeek:main/z1")
    assert own.id != PROCS.id and HostQuery(PROCS.sql, PROCS.interval, instance="zeek:b/z1").id != own.id
    reg.put_subscription("operator", "procs", PROCS, Targets(all=True))
    reg.put_subscription("zeek:main", "z1", own, Targets(all=True))
    connect(reg)
    assert set(reg.wanted("host-1")) == {PROCS.id, own.id}  # two host queries: each its own first run
    reg.close()
    again = Registry(str(tmp_path / "r.db"))
    assert [s.query for s in again.subscriptions()] == [PROCS, own]
    again.close()


def test_a_registry_made_before_instances_gets_the_column(tmp_path):
    path = str(tmp_path / "old.db")
    Registry(path).close()
    db = sqlite3.connect(path)
    db.executescript(
        "ALTER TABLE subscriptions RENAME TO s_new;"
        "CREATE TABLE subscriptions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, sql TEXT NOT NULL,"
        " interval INTEGER NOT NULL, mode TEXT NOT NULL, removed INTEGER NOT NULL, hosts TEXT NOT NULL,"
        " groups TEXT NOT NULL, all_hosts INTEGER NOT NULL, route TEXT NOT NULL, created REAL NOT NULL,"
        " UNIQUE (owner, name)); DROP TABLE s_new;"
        "INSERT INTO subscriptions VALUES ('s1', 'operator', 'procs', 'SELECT 1', 10, 'differential', 1, '[]', '[]', 1,"
        " '', 1.0);"
    )
    db.commit()
    db.close()
    reg = Registry(path)
    (sub,) = reg.subscriptions()
    assert sub.query == HostQuery("SELECT 1", 10) and sub.query.instance == ""
    reg.close()


def test_groups_by_source(registry):
    connect(registry)
    connect(registry, DB1)
    registry.set_groups("host-1", "zeek:a", ["lab", "dmz"])
    registry.set_groups("host-2", "zeek:b", ["lab"])
    assert registry.groups_by_source("zeek:a") == {"host-1": frozenset({"lab", "dmz"})}
    assert registry.groups_by_source(AGENT_GROUP_SOURCE) == {"host-1": frozenset({"web"}), "host-2": frozenset({"db"})}
    assert registry.groups_by_source("nobody") == {}


def test_select_targets(registry):
    connect(registry)
    connect(registry, DB1)
    hosts, unknown = registry.select(Targets(hosts=("db1", "ghost"), groups=("web",)))
    assert [h.host_id for h in hosts] == ["host-2", "host-1"] and unknown == ["ghost"]
    hosts, unknown = registry.select(Targets(all=True))
    assert len(hosts) == 2 and unknown == []


# -- outbox and cursors ---------------------------------------------------------------------


def test_cursors_move_forward_only_and_pruning_keeps_what_a_sink_lacks(registry):
    lease = connect(registry)
    registry.accept([Submission(lease, "web1", batch(s), 1.0) for s in (1, 2, 3)])
    positions = [i.position for i in registry.read(0)]
    assert positions == sorted(positions) and registry.head() == positions[-1]
    registry.commit_cursor(Cursor("a", positions[-1], '{"offset": 10}'))
    registry.commit_cursor(Cursor("b", positions[2]))
    assert registry.cursor("a") == Cursor("a", positions[-1], '{"offset": 10}')
    assert registry.cursor("new") == Cursor("new", 0, "")
    with pytest.raises(RegistryError, match="cannot move back"):
        registry.commit_cursor(Cursor("a", positions[0]))
    assert registry.prune(["a", "b"]) == 3
    assert [i.position for i in registry.read(0)] == positions[3:]
    assert registry.prune([]) == 0
    assert registry.prune_all() == len(positions) - 3 and registry.outbox_size() == 0
    registry.accept([Submission(lease, "web1", batch(4), 1.0)])
    assert registry.read(0)[0].position > positions[-1]  # positions are never reused


def test_a_crash_inside_accept_stores_nothing(registry, tmp_path):
    lease = connect(registry)
    bad = Submission(lease, "web1", batch(1), 1.0)
    original = registry._result_rows

    def explode(*args):
        yield from original(*args)
        raise sqlite3.OperationalError("disk I/O error")

    registry._result_rows = explode
    with pytest.raises(sqlite3.OperationalError):
        registry.accept([bad])
    registry._result_rows = original
    assert registry.host("host-1").last_seq == 0 and results_in(registry) == []
    assert registry.accept([bad]) == [Verdict.STORED]


def test_a_damaged_registry_is_a_clear_error(tmp_path):
    path = tmp_path / "r.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RegistryError, match="cannot open the registry"):
        Registry(str(path))
