"""One router per part of the contract; `app.py` includes them all.

Later parts (the Stripe webhook, server-sent events) add a module here and one line there.
"""
