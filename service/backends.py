"""The engines a server can run its models on, named without importing the web stack, so the
engine (and a GPU machine that has torch and Triton but no FastAPI or pydantic) can read them."""

# "auto": triton on CUDA, else torch.
BACKENDS = ("auto", "torch", "onnxruntime", "triton")
