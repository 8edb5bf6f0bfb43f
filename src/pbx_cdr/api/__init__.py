"""HTTP edge: thin routes, dependencies, responses. Routes validate, call one function, shape the answer."""
