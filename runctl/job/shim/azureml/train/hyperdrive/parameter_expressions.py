"""v1's parameter expressions: each returns ``[name, [args]]`` as azureml-train-core's do
(``choice`` wraps its options in one more list), so a parameter space written for Azure ML
reads the same here."""


def choice(*options):
    if len(options) == 1 and isinstance(options[0], (list, tuple, range)):
        options = tuple(options[0])
    return ["choice", [list(options)]]


def randint(upper):
    return ["randint", [upper]]


def uniform(min_value, max_value):
    return ["uniform", [min_value, max_value]]


def quniform(min_value, max_value, q):
    return ["quniform", [min_value, max_value, q]]


def loguniform(min_value, max_value):
    return ["loguniform", [min_value, max_value]]


def qloguniform(min_value, max_value, q):
    return ["qloguniform", [min_value, max_value, q]]


def normal(mu, sigma):
    return ["normal", [mu, sigma]]


def qnormal(mu, sigma, q):
    return ["qnormal", [mu, sigma, q]]


def lognormal(mu, sigma):
    return ["lognormal", [mu, sigma]]


def qlognormal(mu, sigma, q):
    return ["qlognormal", [mu, sigma, q]]


def as_section(expression):
    """``["uniform", [0, 1]]`` -> ``{"uniform": [0, 1]}`` (the job file's form)."""
    if not (isinstance(expression, (list, tuple)) and len(expression) == 2 and isinstance(expression[1], (list, tuple))):
        raise ValueError("%r is not a parameter expression: use choice(...), uniform(...), ..." % (expression,))
    kind, args = expression
    if kind == "choice":
        args = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    return {kind: list(args)}
