//! The order state machine as a pure type: one transition table, no I/O.
//!
//! ```text
//! pending_payment → paid → shipped → delivered
//! pending_payment → failed | cancelled
//! paid → cancelled
//! paid | shipped | delivered | partially_refunded → partially_refunded | refunded
//! ```
//! `failed`, `cancelled` and `refunded` are terminal. Refunds are checked here too, so
//! "the sum of refunds never exceeds the total" is one pure function the service calls inside
//! the transaction that holds the order's row.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Shipped,
    Delivered,
    Failed,
    Cancelled,
    PartiallyRefunded,
    Refunded,
}

impl OrderStatus {
    /// The states of an order whose payment was taken (whatever was refunded since).
    pub const PAID: [OrderStatus; 5] =
        [OrderStatus::Paid, OrderStatus::Shipped, OrderStatus::Delivered, OrderStatus::PartiallyRefunded, OrderStatus::Refunded];
}

/// What can happen to an order; `Refund` carries what the refund check needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    Pay,
    Fail,
    Cancel,
    Ship,
    Deliver,
    /// Minor units: this refund, the sum of earlier refunds, the order's total.
    Refund {
        amount: i64,
        refunded_so_far: i64,
        total: i64,
    },
}

/// An event without its data: the table's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Pay,
    Fail,
    Cancel,
    Ship,
    Deliver,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Maps to `409 invalid_state`.
    #[error("an order that is {} cannot {}", from.as_str(), event.phrase())]
    InvalidState { from: OrderStatus, event: EventKind },
    /// A refund of zero, a negative one, or one larger than what is left (`remaining`).
    #[error("a refund must be from 1 to {remaining} (minor units)")]
    InvalidRefund { remaining: i64 },
}

use EventKind as E;
use OrderStatus as S;

/// Every allowed transition. A refund row lists both destinations; the amount picks one.
pub const TRANSITIONS: &[(OrderStatus, EventKind, OrderStatus)] = &[
    (S::PendingPayment, E::Pay, S::Paid),
    (S::PendingPayment, E::Fail, S::Failed),
    (S::PendingPayment, E::Cancel, S::Cancelled),
    (S::Paid, E::Ship, S::Shipped),
    (S::Paid, E::Cancel, S::Cancelled),
    (S::Shipped, E::Deliver, S::Delivered),
    (S::Paid, E::Refund, S::PartiallyRefunded),
    (S::Paid, E::Refund, S::Refunded),
    (S::Shipped, E::Refund, S::PartiallyRefunded),
    (S::Shipped, E::Refund, S::Refunded),
    (S::Delivered, E::Refund, S::PartiallyRefunded),
    (S::Delivered, E::Refund, S::Refunded),
    (S::PartiallyRefunded, E::Refund, S::PartiallyRefunded),
    (S::PartiallyRefunded, E::Refund, S::Refunded),
];

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] =
        [S::PendingPayment, S::Paid, S::Shipped, S::Delivered, S::Failed, S::Cancelled, S::PartiallyRefunded, S::Refunded];

    pub fn as_str(self) -> &'static str {
        match self {
            S::PendingPayment => "pending_payment",
            S::Paid => "paid",
            S::Shipped => "shipped",
            S::Delivered => "delivered",
            S::Failed => "failed",
            S::Cancelled => "cancelled",
            S::PartiallyRefunded => "partially_refunded",
            S::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether the table has any row for `event` from here.
    pub fn accepts(self, event: EventKind) -> bool {
        TRANSITIONS.iter().any(|&(from, e, _)| from == self && e == event)
    }

    /// No event moves the order any more.
    pub fn is_terminal(self) -> bool {
        !TRANSITIONS.iter().any(|&(from, _, _)| from == self)
    }

    /// The state after `event`, or why it is refused. The state is checked before the amount,
    /// so a refund on a cancelled order is `InvalidState` whatever its amount.
    pub fn apply(self, event: OrderEvent) -> Result<OrderStatus, OrderError> {
        let kind = event.kind();
        if !self.accepts(kind) {
            return Err(OrderError::InvalidState { from: self, event: kind });
        }
        let to = match event {
            OrderEvent::Pay => S::Paid,
            OrderEvent::Fail => S::Failed,
            OrderEvent::Cancel => S::Cancelled,
            OrderEvent::Ship => S::Shipped,
            OrderEvent::Deliver => S::Delivered,
            OrderEvent::Refund { amount, refunded_so_far, total } => {
                if refunded_after(amount, refunded_so_far, total)? == total {
                    S::Refunded
                } else {
                    S::PartiallyRefunded
                }
            }
        };
        // The match above and the table must agree; the table has the last word.
        if TRANSITIONS.contains(&(self, kind, to)) { Ok(to) } else { Err(OrderError::InvalidState { from: self, event: kind }) }
    }
}

impl EventKind {
    /// For messages: "an order that is shipped cannot *be cancelled*".
    pub fn phrase(self) -> &'static str {
        match self {
            E::Pay => "be paid",
            E::Fail => "fail",
            E::Cancel => "be cancelled",
            E::Ship => "be shipped",
            E::Deliver => "be delivered",
            E::Refund => "be refunded",
        }
    }
}

impl OrderEvent {
    pub fn kind(self) -> EventKind {
        match self {
            OrderEvent::Pay => E::Pay,
            OrderEvent::Fail => E::Fail,
            OrderEvent::Cancel => E::Cancel,
            OrderEvent::Ship => E::Ship,
            OrderEvent::Deliver => E::Deliver,
            OrderEvent::Refund { .. } => E::Refund,
        }
    }
}

/// What may still be refunded (never negative, even from inconsistent inputs).
pub fn refundable(total: i64, refunded_so_far: i64) -> i64 {
    total.saturating_sub(refunded_so_far).max(0)
}

/// The refunded sum after a refund of `amount`, or `InvalidRefund` when the amount is not
/// positive or would take the refunds past `total`.
pub fn refunded_after(amount: i64, refunded_so_far: i64, total: i64) -> Result<i64, OrderError> {
    let remaining = refundable(total, refunded_so_far);
    if amount <= 0 || refunded_so_far < 0 || amount > remaining {
        return Err(OrderError::InvalidRefund { remaining });
    }
    Ok(refunded_so_far + amount)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_happy_path_and_the_contracts_side_roads() {
        assert_eq!(S::PendingPayment.apply(OrderEvent::Pay), Ok(S::Paid));
        assert_eq!(S::Paid.apply(OrderEvent::Ship), Ok(S::Shipped));
        assert_eq!(S::Shipped.apply(OrderEvent::Deliver), Ok(S::Delivered));
        assert_eq!(S::PendingPayment.apply(OrderEvent::Fail), Ok(S::Failed));
        assert_eq!(S::PendingPayment.apply(OrderEvent::Cancel), Ok(S::Cancelled));
        assert_eq!(S::Paid.apply(OrderEvent::Cancel), Ok(S::Cancelled));
    }

    #[test]
    fn refunds_go_partial_then_full_and_never_past_the_total() {
        let refund = |amount, refunded_so_far| OrderEvent::Refund { amount, refunded_so_far, total: 1000 };
        assert_eq!(S::Delivered.apply(refund(400, 0)), Ok(S::PartiallyRefunded));
        assert_eq!(S::PartiallyRefunded.apply(refund(300, 400)), Ok(S::PartiallyRefunded));
        assert_eq!(S::PartiallyRefunded.apply(refund(300, 700)), Ok(S::Refunded));
        assert_eq!(S::Paid.apply(refund(1000, 0)), Ok(S::Refunded));
        assert_eq!(S::PartiallyRefunded.apply(refund(301, 700)), Err(OrderError::InvalidRefund { remaining: 300 }));
        assert_eq!(S::Paid.apply(refund(0, 0)), Err(OrderError::InvalidRefund { remaining: 1000 }));
        assert_eq!(S::Paid.apply(refund(-5, 0)), Err(OrderError::InvalidRefund { remaining: 1000 }));
    }

    #[test]
    fn refused_moves_name_the_state_and_the_event() {
        assert_eq!(S::Shipped.apply(OrderEvent::Cancel), Err(OrderError::InvalidState { from: S::Shipped, event: E::Cancel }));
        let refund = OrderEvent::Refund { amount: 1, refunded_so_far: 0, total: 10 };
        assert_eq!(S::PendingPayment.apply(refund), Err(OrderError::InvalidState { from: S::PendingPayment, event: E::Refund }));
        assert_eq!(S::Shipped.apply(OrderEvent::Cancel).unwrap_err().to_string(), "an order that is shipped cannot be cancelled");
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(OrderStatus::parse("lost"), None);
    }

    #[test]
    fn only_failed_cancelled_and_refunded_are_terminal() {
        let terminal: Vec<_> = OrderStatus::ALL.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal, [S::Failed, S::Cancelled, S::Refunded]);
    }

    fn event(total: i64) -> impl Strategy<Value = OrderEvent> {
        prop_oneof![
            Just(OrderEvent::Pay),
            Just(OrderEvent::Fail),
            Just(OrderEvent::Cancel),
            Just(OrderEvent::Ship),
            Just(OrderEvent::Deliver),
            // Amounts around and beyond what is left; refunded_so_far is filled in by the runner.
            (-2..=total + 2).prop_map(move |amount| OrderEvent::Refund { amount, refunded_so_far: 0, total }),
        ]
    }

    fn run() -> impl Strategy<Value = (i64, Vec<OrderEvent>)> {
        (1i64..=500).prop_flat_map(|total| (Just(total), proptest::collection::vec(event(total), 0..40)))
    }

    proptest! {
        #[test]
        fn every_run_from_pending_payment_stays_inside_the_table((total, events) in run()) {
            let mut state = S::PendingPayment;
            let mut refunded = 0i64;
            for event in events {
                let event = match event {
                    OrderEvent::Refund { amount, total, .. } => OrderEvent::Refund { amount, refunded_so_far: refunded, total },
                    other => other,
                };
                match state.apply(event) {
                    Ok(next) => {
                        prop_assert!(TRANSITIONS.contains(&(state, event.kind(), next)), "{state:?} -{event:?}-> {next:?}");
                        if let OrderEvent::Refund { amount, .. } = event {
                            refunded += amount;
                        }
                        state = next;
                    }
                    Err(OrderError::InvalidState { from, event: kind }) => {
                        prop_assert_eq!(from, state);
                        prop_assert!(!state.accepts(kind));
                    }
                    Err(OrderError::InvalidRefund { remaining }) => {
                        prop_assert_eq!(remaining, total - refunded);
                    }
                }
                prop_assert!((0..=total).contains(&refunded), "refunded {refunded} of {total}");
                prop_assert_eq!(state == S::Refunded, refunded == total);
            }
        }

        #[test]
        fn terminal_states_accept_nothing((_total, events) in run()) {
            for state in [S::Failed, S::Cancelled, S::Refunded] {
                for &event in &events {
                    prop_assert_eq!(state.apply(event), Err(OrderError::InvalidState { from: state, event: event.kind() }));
                }
            }
        }
    }
}
