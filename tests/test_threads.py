"""The one-BLAS-thread guard: nested in the main thread, inert elsewhere."""

import threading

from threadpoolctl import threadpool_info

from skinfluence.utils._threads import one_blas_thread


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_guard_nests_in_the_main_thread_and_restores():
    before = _blas_threads()
    with one_blas_thread:
        with one_blas_thread:
            assert all(n == 1 for n in _blas_threads())
        assert all(n == 1 for n in _blas_threads())  # the outer one still holds
    assert _blas_threads() == before


def test_guard_leaves_limits_alone_from_worker_threads():
    # Concurrent holders in other threads must not leave the process
    # limited (threadpoolctl's own limit/restore pairs, interleaved, can).
    before = _blas_threads()
    barrier = threading.Barrier(4)

    def hold():
        with one_blas_thread:
            barrier.wait()
            with one_blas_thread:
                barrier.wait()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _blas_threads() == before and one_blas_thread._holders == 0
