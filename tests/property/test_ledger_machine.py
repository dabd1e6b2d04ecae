"""Property 2: a rule-based state machine over one ledger, run against each twin
(the compiled ``shardpay._ledger`` and the pure ``shardpay._ledger_py``).

The machine plays the reader (it claims tx ids and marks duplicates with
``kind + DUPLICATE``) and drives the ledger with deposits, withdrawals,
disputes, resolves and chargebacks aimed where bugs live: few clients,
amounts at the limits, references to recent deposits, withdrawals, other
clients' deposits, unknown and later ids, ids lower than the last one stored
(the ledger keeps those elsewhere), charged-back deposits. Rows go in one at
a time or as a batch (one frame).

Every outcome is compared with :class:`shardpay.testing.model.Ledger` (the oracle),
and after every step, for every account:

* ``total == available + held`` (the snapshot's rows against the oracle's
  total) and every balance fits in a signed 64-bit int;
* ``held >= 0``;
* ``held`` equals the sum of the client's deposits under dispute (the
  machine's own book of dispute states, kept from the accepted rows);
* a locked account never changes again (balances frozen at the chargeback);
* a charged-back deposit can never be disputed, resolved or charged back again.

The ledger is used only through its public interface (``apply_frame``,
``take_rejects``, ``account``, ``snapshot``): its internals are free to change.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from shardpay.testing import model
from shardpay.codes import CHARGEBACK, DEPOSIT, DISPUTE, DUPLICATE, KIND_NAMES, RESOLVE, WITHDRAWAL
from tests.ledger_helpers import TWINS, account, apply_one, apply_rows, twin
from shardpay.testing.strategies import U32_MAX, amounts

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
CLIENTS = st.sampled_from([1, 2, 0, 65535])
SELECTORS = st.integers(0, 2**16)
REFERENCES = st.sampled_from([DISPUTE, RESOLVE, CHARGEBACK])
MONEY = st.sampled_from([DEPOSIT, WITHDRAWAL])


class LedgerMachine(RuleBasedStateMachine):
    ledger_cls: type  # the twin under test, set by a subclass

    def __init__(self) -> None:
        super().__init__()
        self.ledger = self.ledger_cls()
        self.oracle = model.Ledger()
        self.line = 1
        self.next_tx = 10
        self.claimed: set[int] = set()
        self.claim_order: list[int] = []
        # the machine's own book, kept from accepted rows
        self.deposits: dict[int, list] = {}  # tx -> [client, amount, state]
        self.withdrawals: dict[int, tuple[int, int]] = {}  # tx -> (client, amount)
        self.frozen: dict[int, tuple[int, int]] = {}  # locked client -> (available, held) at its chargeback
        self.charged_back: list[tuple[int, int]] = []  # (client, tx)
        self.clients: set[int] = set()

    # ------------------------------------------------------------------
    # choosing a concrete row
    # ------------------------------------------------------------------

    def _money_tx(self, sel: int) -> int:
        """A tx id for a deposit/withdrawal: fresh (rising), fresh below earlier ids, or a duplicate."""
        how = sel % 8
        if how == 0 and self.claim_order:
            return self.claim_order[(sel >> 3) % len(self.claim_order)]  # duplicate
        if how == 1:
            tx = (sel >> 3) % self.next_tx  # lower than the last id: stored out of order
            if tx not in self.claimed:
                return tx
        if how == 2:
            tx = U32_MAX - (sel >> 3) % 4
            if tx not in self.claimed:
                return tx
        tx = self.next_tx
        self.next_tx += 1 + sel % 3
        return tx

    def _reference_target(self, client: int, sel: int) -> tuple[int, int]:
        """(client, tx) for a dispute/resolve/chargeback: own deposit, withdrawal, another client's, unknown."""
        how = sel % 6
        deposits = list(self.deposits)
        if how <= 2 and deposits:
            tx = deposits[-1 - (sel >> 3) % min(len(deposits), 3)] if how < 2 else deposits[(sel >> 3) % len(deposits)]
            return self.deposits[tx][0], tx
        if how == 3 and self.withdrawals:
            tx = list(self.withdrawals)[(sel >> 3) % len(self.withdrawals)]
            return self.withdrawals[tx][0], tx
        if how == 4 and deposits:
            return client, deposits[(sel >> 3) % len(deposits)]  # maybe another client's deposit
        return client, [self.next_tx + 1, 0, U32_MAX, 7][(sel >> 3) % 4]  # unknown, or seen only later

    def _amount(self, amount: int, sel: int) -> int:
        """Often an amount already in the book, so withdrawals and sums hit exact limits."""
        if sel % 3 == 0 and self.deposits:
            return list(self.deposits.values())[(sel >> 2) % len(self.deposits)][1]
        return amount

    def _row(self, kind: int, client: int, sel: int, amount: int) -> tuple[int, int, int, int, int]:
        """Resolve a drawn row to ``(line, ledger kind, client, tx, amount)`` and claim its id."""
        self.line += 1 + sel % 2  # line numbers rise, with gaps (other shards' rows)
        if kind <= WITHDRAWAL:
            tx = self._money_tx(sel)
            amount = self._amount(amount, sel >> 5)
            code = kind
            if tx in self.claimed:
                code += DUPLICATE
            else:
                self.claimed.add(tx)
                self.claim_order.append(tx)
            return self.line, code, client, tx, amount
        client, tx = self._reference_target(client, sel)
        return self.line, kind, client, tx, 0

    # ------------------------------------------------------------------
    # applying and checking
    # ------------------------------------------------------------------

    def _oracle_apply(self, row: tuple[int, int, int, int, int]) -> str | None:
        _, code, client, tx, amount = row
        kind = code % DUPLICATE
        before = self._oracle_account(client)
        reason = self.oracle.apply(KIND_NAMES[kind], client, tx, amount)
        self.clients.add(client)
        if reason is None:  # keep the machine's book from the accepted row
            if kind == DEPOSIT:
                self.deposits[tx] = [client, amount, "settled"]
            elif kind == WITHDRAWAL:
                self.withdrawals[tx] = (client, amount)
            elif kind == DISPUTE:
                self.deposits[tx][2] = "disputed"
            elif kind == RESOLVE:
                self.deposits[tx][2] = "settled"
            else:
                self.deposits[tx][2] = "charged_back"
                self.charged_back.append((client, tx))
                available, held, _ = self._oracle_account(client)
                self.frozen[client] = (available, held)
        else:
            assert self._oracle_account(client) == before
        return reason

    def _oracle_account(self, client: int) -> tuple[int, int, bool]:
        acct = self.oracle.accounts.get(client)
        return (0, 0, False) if acct is None else (acct.available, acct.held, acct.locked)

    def _account(self, client: int) -> tuple[int, int, bool]:
        return account(self.ledger, client)

    @rule(kind=MONEY, client=CLIENTS, sel=SELECTORS, amount=amounts())
    def money_row(self, kind, client, sel, amount):
        row = self._row(kind, client, sel, amount)
        got = apply_one(self.ledger, *row)
        assert got == self._oracle_apply(row), row

    @rule(kind=REFERENCES, client=CLIENTS, sel=SELECTORS)
    def reference_row(self, kind, client, sel):
        row = self._row(kind, client, sel, 0)
        got = apply_one(self.ledger, *row)
        assert got == self._oracle_apply(row), row

    @rule(
        rows=st.lists(
            st.tuples(st.sampled_from([DEPOSIT, DEPOSIT, WITHDRAWAL, DISPUTE, RESOLVE, CHARGEBACK]), CLIENTS,
                      SELECTORS, amounts()),
            min_size=1,
            max_size=12,
        )
    )
    def batch(self, rows):
        """Several rows in one ``apply`` call, as a worker applies a frame."""
        resolved = []
        reasons = []
        for kind, client, sel, amount in rows:  # resolve and run through the oracle row by row
            row = self._row(kind, client, sel, amount if kind <= WITHDRAWAL else 0)
            resolved.append(row)
            reasons.append(self._oracle_apply(row))
        records = apply_rows(self.ledger, resolved)
        assert len(records) == sum(r is not None for r in reasons), (resolved, reasons)

    @rule(kind=REFERENCES, sel=SELECTORS)
    def reference_to_charged_back(self, kind, sel):
        """A charged-back deposit can never be disputed (resolved, charged back) again."""
        if not self.charged_back:
            return
        client, tx = self.charged_back[sel % len(self.charged_back)]
        before = self._account(client)
        self.line += 1
        row = (self.line, kind, client, tx, 0)
        got = apply_one(self.ledger, *row)
        assert got is not None
        assert got == self._oracle_apply(row)
        assert self._account(client) == before

    # ------------------------------------------------------------------
    # invariants, after every step
    # ------------------------------------------------------------------

    @invariant()
    def balances_equal_the_oracle(self):
        for c in self.clients:
            oa = self.oracle.accounts[c]
            a, h, lk = self._account(c)
            assert (a, h, lk) == (oa.available, oa.held, oa.locked), c
            assert a + h == oa.available + oa.held  # total == available + held
            assert I64_MIN <= a <= I64_MAX and 0 <= h <= I64_MAX and I64_MIN <= a + h <= I64_MAX

    def teardown(self):
        """The snapshot (what a worker sends back) holds exactly the accounts some row named, sorted.

        Checked at the end of each run rather than after every step: a
        snapshot may cost a scan of the whole client range. Accounts are never
        removed, so a missing or extra one is still seen at the end.
        """
        clients, available, held, locked = self.ledger.snapshot()
        assert list(clients) == sorted(self.clients)  # an account exists iff a well-formed row named it
        for c, a, h, lk in zip(clients, available, held, locked):
            assert (a, h, bool(lk)) == self._account(c), c

    @invariant()
    def held_is_the_sum_of_disputed_deposits(self):
        disputed: dict[int, int] = {}
        for client, amount, state in self.deposits.values():
            if state == "disputed":
                disputed[client] = disputed.get(client, 0) + amount
        for c in self.clients:
            held = self._account(c)[1]
            assert held >= 0
            assert held == disputed.get(c, 0), c

    @invariant()
    def locked_accounts_never_change(self):
        for c, (available, held) in self.frozen.items():
            assert self._account(c) == (available, held, True), c


@pytest.mark.parametrize("name", TWINS)
def test_ledger_machine(name):
    """The machine against one twin. Cheap (no processes, ~40 ms a run of 50 steps with the
    pure twin): twice the profile's example budget."""
    machine = type(f"LedgerMachine_{name}", (LedgerMachine,), {"ledger_cls": twin(name)})
    run_state_machine_as_test(machine, settings=settings(max_examples=2 * settings().max_examples))
