# Thin aliases for the scripts; the scripts are the source of truth.
.PHONY: main test reproduce diagnose
main:
	bash scripts/main
test:
	bash scripts/test
reproduce:
	bash scripts/reproduce
diagnose:
	.venv/bin/sparsegate-diagnose --out runs/diagnose
