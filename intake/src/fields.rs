//! The fields an order record keeps, and the common English and Chinese headers that name them.

use crate::text::header_key;
use serde::{Serialize, Serializer};
use std::fmt;

/// A field of an order record, in output order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// The order's id in the ERP (`order_id`); every record needs one.
    OrderId,
    /// The customer's id (`customer_id`).
    CustomerId,
    /// The customer's name (`customer`).
    Customer,
    /// The order total, an exact decimal with two places (`amount`).
    Amount,
    /// ISO 4217 code of the amount's currency (`currency`).
    Currency,
    /// The order status as the source writes it (`status`).
    Status,
    /// When the order was created (`created_at`).
    CreatedAt,
    /// When the record was last updated (`updated_at`); the newest record wins alignment.
    UpdatedAt,
    /// When the order was paid (`paid_at`).
    PaidAt,
}

impl Field {
    /// Every field, in output order.
    pub const ALL: [Field; 9] = [
        Field::OrderId,
        Field::CustomerId,
        Field::Customer,
        Field::Amount,
        Field::Currency,
        Field::Status,
        Field::CreatedAt,
        Field::UpdatedAt,
        Field::PaidAt,
    ];

    /// The number of fields.
    pub const COUNT: usize = Field::ALL.len();

    /// The field's name in output records and in the mapping file.
    pub fn name(self) -> &'static str {
        match self {
            Field::OrderId => "order_id",
            Field::CustomerId => "customer_id",
            Field::Customer => "customer",
            Field::Amount => "amount",
            Field::Currency => "currency",
            Field::Status => "status",
            Field::CreatedAt => "created_at",
            Field::UpdatedAt => "updated_at",
            Field::PaidAt => "paid_at",
        }
    }

    /// The field named `name` (as [`Field::name`] spells it).
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.name() == name)
    }

    /// Whether the field holds a time.
    pub fn is_time(self) -> bool {
        matches!(self, Field::CreatedAt | Field::UpdatedAt | Field::PaidAt)
    }

    /// The headers recognized for the field without a mapping; compared by [`header_key`], so
    /// case, spaces and underscores do not matter.
    pub fn headers(self) -> &'static [&'static str] {
        match self {
            Field::OrderId => &["order_id", "orderId", "order_no", "订单号", "订单编号"],
            Field::CustomerId => &["customer_id", "客户编号"],
            Field::Customer => &[
                "customer",
                "customer_name",
                "customerName",
                "客户",
                "客户名称",
            ],
            Field::Amount => &[
                "total_amount",
                "totalAmount",
                "amount",
                "total",
                "总金额",
                "金额",
            ],
            Field::Currency => &["currency"],
            Field::Status => &["status"],
            Field::CreatedAt => &["created_at", "创建时间"],
            Field::UpdatedAt => &["updated_at", "更新时间"],
            Field::PaidAt => &["paid_at", "支付时间"],
        }
    }

    /// The field a header names, when it is one of the common headers.
    pub fn recognize(header: &str) -> Option<Field> {
        let key = header_key(header);
        Field::ALL
            .into_iter()
            .find(|field| field.headers().iter().any(|known| header_key(known) == key))
    }

    /// The field's position in [`Field::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Field {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_headers_are_recognized_in_any_case_spacing_and_underscores() {
        let cases = [
            ("order_id", Field::OrderId),
            ("OrderId", Field::OrderId),
            ("ORDER NO", Field::OrderId),
            ("customer_name", Field::Customer),
            ("Customer Name", Field::Customer),
            ("customerName", Field::Customer),
            ("customer", Field::Customer),
            ("Customer_ID", Field::CustomerId),
            ("customerId", Field::CustomerId),
            ("totalAmount", Field::Amount),
            ("total_amount", Field::Amount),
            ("Total", Field::Amount),
            ("amount", Field::Amount),
            ("Currency", Field::Currency),
            ("createdAt", Field::CreatedAt),
            ("Updated At", Field::UpdatedAt),
            ("paid_at", Field::PaidAt),
            ("STATUS", Field::Status),
        ];
        for (header, field) in cases {
            assert_eq!(Field::recognize(header), Some(field), "{header}");
        }
    }

    #[test]
    fn chinese_headers_are_recognized() {
        let cases = [
            ("订单号", Field::OrderId),
            ("订单编号", Field::OrderId),
            ("客户", Field::Customer),
            ("客户名称", Field::Customer),
            ("客户编号", Field::CustomerId),
            ("总金额", Field::Amount),
            ("金额", Field::Amount),
            ("创建时间", Field::CreatedAt),
            ("更新时间", Field::UpdatedAt),
            ("支付时间", Field::PaidAt),
            (" 订单 编号 ", Field::OrderId),
        ];
        for (header, field) in cases {
            assert_eq!(Field::recognize(header), Some(field), "{header}");
        }
    }

    #[test]
    fn other_headers_are_not_guessed() {
        for header in ["币种", "状态", "remark", "order", "price", "id", ""] {
            assert_eq!(Field::recognize(header), None, "{header}");
        }
    }

    #[test]
    fn names_round_trip() {
        for field in Field::ALL {
            assert_eq!(Field::from_name(field.name()), Some(field));
            assert_eq!(Field::ALL[field.index()], field);
        }
        assert_eq!(Field::from_name("total"), None);
    }
}
