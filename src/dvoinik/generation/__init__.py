"""Generation: decoding settings, the loaded double, the originality guard, variants and streaming, the copy index, check.

    double = load_double(ws, run="demo", checkpoint="best")                     # generation.double
    result = generate(double, "В то утро она вышла из дома и", decoding_for("coherent", seed=1), n=3, guard=10)
"""
