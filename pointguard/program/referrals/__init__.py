"""Referrals: codes, the referee's welcome, the referrer's reward, caps, ladder, reversal."""
