"""`unetfamily compare`: train the family under one protocol and report which model fits the data."""
