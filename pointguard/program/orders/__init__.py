"""Orders: points per line, what paid orders earn and refunds take back, and their records."""
