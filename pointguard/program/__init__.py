"""The merchant's loyalty program: versioned program documents and the pure rules that turn
events (orders, refunds, actions, referrals) into ledger intents. Arrives with the program issue."""
