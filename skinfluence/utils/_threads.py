"""One BLAS thread for small NumPy algebra beside torch's threads, safely.

threadpoolctl's limits are process-wide: two threads that each limit and
restore can leave the process limited for good (the second saves the
first's limit as its "original"), and OpenBLAS (pthreads) does not apply a
limit set from a worker thread reliably (measured: the worker still saw
two threads). So the guard acts in the main thread only, nested calls
counted (the outermost limits and restores); elsewhere it does nothing.
"""

import threading

from threadpoolctl import ThreadpoolController


class _OneBLASThread:
    def __init__(self):
        self._lock = threading.Lock()
        self._holders = 0
        self._limiter = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        with self._lock:
            if self._holders == 0:
                self._limiter = ThreadpoolController().limit(
                    limits=1, user_api="blas")
            self._holders += 1
        return self

    def __exit__(self, *exc):
        if threading.current_thread() is not threading.main_thread():
            return False
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._limiter.restore_original_limits()
                self._limiter = None
        return False


#: ``with one_blas_thread:`` runs NumPy's BLAS on one thread meanwhile.
one_blas_thread = _OneBLASThread()
