"""payment-window: enforces payment windows on Stripe Checkout sessions."""
