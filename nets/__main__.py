"""python -m nets train {lenet,autoencoder} [--data DIR] [--epochs N] ... [--json]"""
from nets.cli import main

raise SystemExit(main())
