"""Payment processing: retries with backoff, an idempotency key, a refund on failure, manual review.

An order is charged through a (simulated) card provider that drops connections, retried with
exponential backoff under one idempotency key so the customer is charged once however often the
call is retried or replayed. If shipping then fails, the charge is refunded by an ``on_error``
compensation. Payments above a threshold wait, suspended, for a human decision.

Run the demo (four orders, one of them reviewed):

    python examples/payments.py

Or one payment from the command line:

    graphflow run examples/payments.py process_payment \
        --input '{"order_id": "o-1", "amount_cents": 4200, "card": "tok_flaky", "sku": "book"}'
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from pydantic import BaseModel, Field

import graphflow as gf

REVIEW_THRESHOLD_CENTS = 100_000
"""Payments above $1,000.00 wait for a human to approve them."""

OUT_OF_STOCK = frozenset({"vintage-lamp"})


# --- the simulated payment provider (think Stripe) -----------------------------------------------


class ProviderUnavailableError(Exception):
    """A transient network failure: worth retrying."""


class CardDeclinedError(Exception):
    """The bank said no: retrying cannot help."""


@dataclass
class PaymentProvider:
    """An in-memory card processor: idempotent on the key, and flaky like a real network.

    Card ``tok_flaky`` charges the card but loses the response twice before answering; a client
    that retried without the idempotency key would charge the customer three times.
    ``tok_declined`` is refused.
    """

    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(
        self, *, idempotency_key: str, order_id: str, amount_cents: int, card: str
    ) -> dict[str, Any]:
        with self._lock:
            calls = self.calls[idempotency_key] = self.calls.get(idempotency_key, 0) + 1
            if card == "tok_declined":
                raise CardDeclinedError("insufficient funds")
            charge = self.charges.get(idempotency_key)
            if charge is None:
                charge_id = f"ch_{uuid.uuid4().hex[:12]}"
                charge = {
                    "charge_id": charge_id,
                    "order_id": order_id,
                    "amount_cents": amount_cents,
                }
                self.charges[idempotency_key] = charge
            if card == "tok_flaky" and calls <= 2:
                raise ProviderUnavailableError("connection reset while reading the response")
            return charge

    def refund(self, *, idempotency_key: str, charge_id: str, amount_cents: int) -> dict[str, Any]:
        with self._lock:
            refund_id = f"re_{uuid.uuid4().hex[:12]}"
            refund = {"refund_id": refund_id, "charge_id": charge_id, "amount_cents": amount_cents}
            return self.refunds.setdefault(idempotency_key, refund)

    def charges_for(self, order_id: str) -> list[dict[str, Any]]:
        return [c for c in self.charges.values() if c["order_id"] == order_id]


PROVIDER = PaymentProvider()


# --- types ----------------------------------------------------------------------------------------


class PaymentRequest(BaseModel):
    order_id: str
    amount_cents: int = Field(gt=0)
    card: str
    sku: str


class Charge(BaseModel):
    charge_id: str
    order_id: str
    amount_cents: int


class ShipRequest(BaseModel):
    order_id: str
    sku: str
    charge_id: str
    amount_cents: int


class Shipment(BaseModel):
    shipment_id: str
    sku: str


class StepError(BaseModel):
    type: str
    message: str


class FailedShipment(BaseModel):
    """What an ``on_error`` compensation receives: the error, the step and the step's input."""

    error: StepError
    step: str
    input: ShipRequest


class Refund(BaseModel):
    refund_id: str
    charge_id: str
    amount_cents: int


class ReviewDecision(BaseModel):
    approved: bool
    reviewer: str
    note: str = ""


class PaymentResult(BaseModel):
    order_id: str
    status: Literal["paid", "declined", "rejected", "refunded"]
    charge_id: str | None = None
    shipment_id: str | None = None
    detail: str = ""


# --- steps ----------------------------------------------------------------------------------------


@gf.function(retries=4, retry_delay="100ms", backoff=2.0)
def charge_card(order_id: str, amount_cents: int, card: str) -> Charge:
    """Charge the card once, however many attempts and replays it takes."""
    key = gf.current_step().idempotency_key
    try:
        charge = PROVIDER.charge(
            idempotency_key=key, order_id=order_id, amount_cents=amount_cents, card=card
        )
    except CardDeclinedError as exc:
        raise gf.NonRetryableError(f"card declined: {exc}") from exc
    return Charge.model_validate(charge)


@gf.function
def ship_order(order: ShipRequest) -> Shipment:
    if order.sku in OUT_OF_STOCK:
        raise gf.NonRetryableError(f"{order.sku!r} is out of stock")
    return Shipment(shipment_id=f"sh_{order.order_id}", sku=order.sku)


@gf.function
def refund_payment(failure: FailedShipment) -> Refund:
    """Compensation for a failed shipment: give the money back (idempotently too)."""
    refund = PROVIDER.refund(
        idempotency_key=gf.current_step().idempotency_key,
        charge_id=failure.input.charge_id,
        amount_cents=failure.input.amount_cents,
    )
    return Refund.model_validate(refund)


# --- the workflow ---------------------------------------------------------------------------------


@gf.workflow(description="Charge an order, ship it, refund if shipping fails; review big ones")
async def process_payment(wf: gf.Workflow, data: PaymentRequest) -> PaymentResult:
    order_id = data.order_id
    if data.amount_cents > REVIEW_THRESHOLD_CENTS:
        reason = f"Manual review of order {order_id}"
        try:
            decision = await wf.suspend(reason, schema=ReviewDecision, timeout="3d")
        except gf.SuspendTimeout:
            return PaymentResult(order_id=order_id, status="rejected", detail="review timed out")
        if not decision.approved:
            detail = f"rejected by {decision.reviewer}: {decision.note}"
            return PaymentResult(order_id=order_id, status="rejected", detail=detail)

    try:
        charge = await wf.do("Charge card", charge_card, data.model_dump(exclude={"sku"}))
    except gf.StepFailed as failed:
        return PaymentResult(order_id=order_id, status="declined", detail=failed.error.message)

    shipping = ShipRequest(
        order_id=order_id,
        sku=data.sku,
        charge_id=charge.charge_id,
        amount_cents=charge.amount_cents,
    )
    try:
        shipment = await wf.do(
            "Ship order", ship_order, shipping.model_dump(), on_error="refund_payment"
        )
    except gf.StepFailed as failed:
        return PaymentResult(
            order_id=order_id,
            status="refunded",
            charge_id=charge.charge_id,
            detail=failed.error.message,
        )
    return PaymentResult(
        order_id=order_id,
        status="paid",
        charge_id=charge.charge_id,
        shipment_id=shipment.shipment_id,
    )


# --- demo -----------------------------------------------------------------------------------------

DEMO_ORDERS = [
    {"order_id": "o-100", "amount_cents": 4_200, "card": "tok_flaky", "sku": "book"},
    {"order_id": "o-101", "amount_cents": 1_999, "card": "tok_declined", "sku": "mug"},
    {"order_id": "o-102", "amount_cents": 12_500, "card": "tok_visa", "sku": "vintage-lamp"},
    {"order_id": "o-103", "amount_cents": 250_000, "card": "tok_visa", "sku": "e-bike"},
]


async def settle(engine: gf.Engine, run_id: str) -> gf.RunStatus:
    """Wait until the run ends or suspends."""
    while True:
        status = await engine.status(run_id)
        if status.state in ("completed", "failed", "cancelled", "suspended"):
            return status
        await anyio.sleep(0.05)


async def demo(store: str | None = None) -> list[Any]:
    results = []
    async with gf.Engine(store) as engine:
        # One run per order: the order id makes the run id, so re-running the demo (or a client
        # retrying) never pays twice.
        run_ids = [
            await engine.start("process_payment", order, run_id=f"payment-{order['order_id']}")
            for order in DEMO_ORDERS
        ]
        for run_id in run_ids:
            status = await settle(engine, run_id)
            if status.state == "suspended":
                print(f"{run_id}: suspended ({status.suspend_reason}); approving it")
                decision = {"approved": True, "reviewer": "risk@example.com", "note": "known buyer"}
                await engine.resume(run_id, decision)
            status = await engine.wait(run_id, timeout=60)
            print(f"{run_id}: {status.output}")
            results.append(status.output)
    return results


if __name__ == "__main__":
    anyio.run(demo)
