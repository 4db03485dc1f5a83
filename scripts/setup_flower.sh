#!/usr/bin/env bash
# .venv-flower: Flower (flwr), used only by the test that checks federated/fedavg.py against Flower's own
# aggregation (pins: requirements-flower.txt). Flower pins its own numpy/protobuf/grpc; called via subprocess.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_side_venv.sh" "${FLOWER_VENV:-.venv-flower}" \
    requirements-flower.txt "import flwr"
