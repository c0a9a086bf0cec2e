"""``python -m unetfamily`` (also what ``torchrun -m unetfamily`` runs)."""
import sys

from unetfamily.cli import main

sys.exit(main())
