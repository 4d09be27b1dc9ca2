"""``lstm-predictor bench``: load a daemon over HTTP and compare it with the Keras service it replaces.

Split by job: :mod:`.scenarios` builds the request bodies, :mod:`.wrk` and
:mod:`.aio` generate load and return a :class:`.loadgen.LoadResult`,
:mod:`.process` starts a daemon and watches its memory, :mod:`.keras_baseline`
times the original model in a child process, :mod:`.report` prints the table.
"""
