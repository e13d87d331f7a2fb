"""The program a backtest runs unless given another: small, and with every kind of earn the
simulator's attacks go after, so that each attack earns something for the guard to hold.

- referrals whose first-order minimum is the simulator's `REFERRAL_MIN_MINOR` (20 EUR), the
  mark self-referrers, sybil rings, disposable-email farms and order splitters aim just above;
- a signup bonus and review bonuses (available at once: nothing waits for a return window),
  which the review farm and every fresh account take;
- challenges for orders, referrals and reviews, which splitting, referring and farming move;
- a points-plus-cash reward (a point buys a cent, up to the whole cart), through which a
  checkout spends any number of points on the same `redeem` path a storefront's checkout takes.

The guard's `[guard]` section keeps its defaults: the backtest measures the guard as shipped.
"""

from __future__ import annotations

BACKTEST_PROGRAM = """
name = "Backtest"
currency = "EUR"
return_window_days = 14

[earning]
points_per_major_unit = "1"

[[actions]]
event = "signup"
points = 100
description = "Welcome"
lifetime = 1

[[actions]]
event = "review.published"
points = 25
description = "Thanks for your review"
per_day = 3
per_month = 10

[referrals]
referee_points = 200
referee_reward_on = "first_order"
referrer_points = 500
min_first_order_minor = 2000

[[challenges]]
id = "three-orders"
name = "Three orders in a month"
goal = "orders"
target = 3
window_days = 30
bonus_points = 300
badge = "Regular"

[[challenges]]
id = "connector"
name = "Refer two friends"
goal = "referrals"
target = 2
window_days = 60
bonus_points = 400
badge = "Connector"

[[challenges]]
id = "critic"
name = "Write three reviews"
goal = "reviews"
target = 3
window_days = 60
bonus_points = 150
badge = "Critic"

[[rewards]]
type = "points_plus_cash"
id = "pay-with-points"
name = "Pay with points"
cost_points = 1
amount_minor = 1
min_points = 1
max_share_percent = 100
"""
