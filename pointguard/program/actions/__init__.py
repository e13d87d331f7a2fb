"""Actions beyond purchases (signup, birthday, reviews, custom): caps and their records."""
