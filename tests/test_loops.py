"""Two CaseConsultant instances and a badly behaved autoresponder, wired to each other.

Everything each party sends is delivered to the addressee at once (intake, classification,
drafting, and a consultant who approves every case it can, once — the worst reviewer for a
loop).  The autoresponder answers every mail it gets, with none of the RFC 3834 headers, and
starts new threads as often as it replies in old ones.  The exchange must die out on its own:
the loop header, the signed Message-IDs, the quota hold with its one notice a day and the
per-address cap on automatic mail bound it.  The totals are printed (run with ``-s``).
"""

from __future__ import annotations

from collections import Counter, deque
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import select

from consultant.db import make_engine, make_session_factory, upgrade
from consultant.intake.store import Location, store_raw
from consultant.models import AWAITING_REVIEW, NEEDS_INFO, Case, InboundMail
from consultant.outbox import send as outbox_send
from consultant.privacy.crypto import load_keys
from consultant.processing import draft_case, process_mail
from consultant.review.actions import ActionError, approve
from tests.conftest import make_settings

MAX_MAILS = 500  # far above any bounded exchange; reaching it means a loop


class Network:
    def __init__(self) -> None:
        self.queue: deque[tuple[str, str, bytes]] = deque()  # (sender, recipient, raw)
        self.counts: Counter[str] = Counter()
        self.total = 0

    def send(self, raw: bytes, sender: str, recipient: str) -> None:
        self.queue.append((sender, recipient, raw))

    def close(self) -> None:
        pass


class Instance:
    def __init__(self, name: str, address: str, tmp_path: Path, net: Network, *,
                 review: bool, **service: object) -> None:
        url = f"sqlite:///{tmp_path / name}.sqlite"
        upgrade(url)
        self.settings = make_settings(url, tmp_path / name, service={
            "address": address, "message_id_secret": name, **service})
        self.review = review
        self.engine = make_engine(url, keys=load_keys(self.settings.privacy))
        self.factory = make_session_factory(self.engine)
        self.address, self.net = address, net
        self.approved: set[int] = set()

    def receive(self, raw: bytes) -> None:
        stored = store_raw(self.factory, raw, Location("smtp", self.address))
        effects = process_mail(self.factory, self.settings, stored.mail_id)
        for case_id in effects.draft_case_ids:
            effects.extend(draft_case(self.factory, self.settings, case_id))
        self._send(effects.outbox_ids)
        if self.review:
            self._review()

    def _review(self) -> None:
        """The consultant approves every case awaiting review (or a question back), each once."""
        with self.factory() as session:
            waiting = session.execute(select(Case.id).where(Case.status.in_((AWAITING_REVIEW, NEEDS_INFO)))).scalars().all()
        for case_id in waiting:
            if case_id in self.approved:
                continue
            self.approved.add(case_id)
            try:
                effects = approve(self.factory, self.settings, case_id, text="An answer.", by="c@x.test")
            except ActionError:
                continue  # e.g. held for quota
            self._send(effects.outbox_ids)

    def _send(self, outbox_ids: list[int]) -> None:
        for outbox_id in outbox_ids:
            outbox_send.send_one(self.factory, self.settings, outbox_id, self.net)


def autoresponder_reply(raw: bytes, address: str, serial: int) -> bytes:
    """What a naive vacation script sends: no Auto-Submitted, no Precedence, a plain subject;
    every other reply starts a new thread instead of answering in the old one."""
    original = BytesParser(policy=policy.default).parsebytes(raw)
    reply = EmailMessage()
    reply["From"] = address
    reply["To"] = str(original["From"])
    reply["Message-ID"] = make_msgid(domain="robot.test")
    if serial % 2:
        reply["Subject"] = f"Your message number {serial} about 77301"
    else:
        reply["Subject"] = "Re: " + str(original["Subject"] or "")
        if original["Message-ID"]:
            reply["In-Reply-To"] = str(original["Message-ID"])
    reply.set_content("Thanks for your mail. Can 77301 and 77338 be billed together?")
    return reply.as_bytes()


def question(sender: str, to: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="seed.test")
    msg.set_content("Can 77301 and 77338 be billed the same day? Medicare, office.")
    return msg.as_bytes()


def run(net: Network, parties: dict[str, Instance], robot: str) -> None:
    replies = 0
    while net.queue and net.total < MAX_MAILS:
        sender, recipient, raw = net.queue.popleft()
        net.total += 1
        net.counts[f"{sender or '<>'} -> {recipient}"] += 1
        if recipient in parties:
            parties[recipient].receive(raw)
        elif recipient == robot:
            replies += 1
            net.send(autoresponder_reply(raw, robot, replies), robot, next(iter(parties)))
    for instance in parties.values():
        instance.engine.dispose()


def report(title: str, net: Network) -> str:
    lines = [f"\nloop test ({title}): {net.total} mails in all before the exchange stopped"]
    lines += [f"  {count:3d}  {route}" for route, count in sorted(net.counts.items())]
    return "\n".join(lines)


def rule_hits(instance: Instance) -> Counter[str]:
    with instance.factory() as session:
        return Counter(hit for hits in session.execute(select(InboundMail.rule_hits)).scalars()
                       for hit in hits)


def test_two_instances_and_an_autoresponder_do_not_make_a_storm(tmp_path, capsys):
    net = Network()
    a = Instance("a", "consult@a.test", tmp_path, net, review=True)
    b = Instance("b", "consult@b.test", tmp_path, net, review=True)
    robot = "away@robot.test"
    # The autoresponder asks A; a forged mail "from A" asks B, so B answers A; and B's own
    # address asks A (a misconfigured forwarder), so each instance gets the other's mail.
    net.send(question(robot, a.address, "Question about 77301"), robot, a.address)
    net.send(question(a.address, b.address, "Forged from A"), a.address, b.address)
    net.send(question(b.address, a.address, "Forwarded from B"), b.address, a.address)
    run(net, {a.address: a, b.address: b}, robot)
    with capsys.disabled():
        print(report("two instances, a reviewer approving everything once", net))
    assert not net.queue and net.total < 30, net.counts
    # Each instance recognised the other's mail by its loop header and did not answer it.
    assert rule_hits(a)["is_loop"] >= 1 and rule_hits(b)["is_loop"] >= 1


def test_the_daily_cap_alone_stops_an_autoresponder_that_answers_our_notices(tmp_path, capsys):
    # No reviewer, no quota (every question is held and answered by an over-quota notice),
    # and no notice interval: only auto_mail_per_address_per_day stands between the robot and
    # a storm.
    net = Network()
    a = Instance("a", "consult@a.test", tmp_path, net, review=False, notice_interval_hours=0,
                 auto_mail_per_address_per_day=3)
    a.settings.quota.guest = 0
    robot = "away@robot.test"
    net.send(question(robot, a.address, "Question about 77301"), robot, a.address)
    run(net, {a.address: a}, robot)
    with capsys.disabled():
        print(report("one instance, no quota, no notice interval, cap 3 a day", net))
    assert not net.queue
    assert net.counts[f"<> -> {robot}"] == 3
    assert net.total == 1 + 3 + 3  # the question, three notices, three robot replies
