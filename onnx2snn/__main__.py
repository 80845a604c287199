"""``python -m onnx2snn`` is the ``onnx2snn`` command."""

import sys

from .cli import main

sys.exit(main())
