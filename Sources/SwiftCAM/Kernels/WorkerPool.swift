// WorkerPool: persistent threads that run the parts of one parallel step at a time, the calling
// thread claiming parts alongside them. Kernels hand over hundreds of short steps per forward pass
// (a band's im2col, its GEMM, the bias pass), so waking a sleeping thread for each (as Dispatch
// does) costs more than it saves: workers spin briefly between steps and only then sleep.
// A caller that finds the pool busy (another Python thread, or a nested step) runs its parts
// itself, so the cores are never oversubscribed.

import Glibc
import Synchronization

final class WorkerPool: @unchecked Sendable {
    /// The process's pool; its workers are started on first use, at most one fewer than the cores.
    static let shared = WorkerPool()

    /// Workers that may be running at once besides the caller.
    let maximumWorkers = max(0, sysconf(Int32(_SC_NPROCESSORS_ONLN)) - 1)

    /// Spins of an idle worker before it sleeps (about 0.1 ms).
    private static let spinLimit = 1 << 17
    /// Bits of `ticket` that count claimed parts; the bits above hold the step's generation.
    private static let partBits = 24
    private static let partMask = (1 << partBits) - 1

    // A step is published by one caller holding `busy`: it closes the previous generation, stores
    // the body and part count, then sets `ticket` = (generation, 0). Threads claim part indices
    // by compare-and-swap on `ticket`, so a claim succeeds only while its generation is current
    // (and the fields they read are that step's), and a caller returns only once every claimed
    // part has completed, so the body outlives every call of it.
    private let busy = Atomic<Bool>(false)
    private let ticket = Atomic<Int>(0)
    private let completedParts = Atomic<Int>(0)
    private let bodyAddress = Atomic<Int>(0)  // -> ((Int) -> Void), valid during one step
    private let partCount = Atomic<Int>(0)
    private var workerCount = 0  // touched only by the caller holding `busy`

    // Allocated, not stored properties: pthread objects must not move, and `&property` only
    // promises a pointer for the duration of a call.
    private let sleepLock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let wakeUp = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(sleepLock, nil)
        pthread_cond_init(wakeUp, nil)
        // A forked child has none of the parent's threads: start again with no workers.
        pthread_atfork(nil, nil, { WorkerPool.shared.resetAfterFork() })
    }

    /// Runs `body(part)` for every part in `0..<parts`; in parallel when the pool is free, else
    /// sequentially on the calling thread. The caller claims parts too, so a worker that is slow
    /// to wake (the cores are busy elsewhere) delays nothing: the caller does its share.
    func run(parts: Int, _ body: (Int) -> Void) {
        let helpers = min(parts - 1, maximumWorkers)
        guard helpers > 0, parts < Self.partMask,
              busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            for part in 0..<parts { body(part) }
            return
        }
        defer { busy.store(false, ordering: .releasing) }
        startWorkers(upTo: helpers)
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                // First a closed generation (no part claimable), so that a worker still holding the
                // previous step's generation cannot claim while the fields below change; then the
                // step's own generation.
                let previous = ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits
                ticket.store(((previous + 1) << Self.partBits) | Self.partMask, ordering: .sequentiallyConsistent)
                completedParts.store(0, ordering: .sequentiallyConsistent)
                partCount.store(parts, ordering: .sequentiallyConsistent)
                bodyAddress.store(Int(bitPattern: UnsafeRawPointer(pointer)), ordering: .sequentiallyConsistent)
                let generation = previous + 2
                ticket.store(generation << Self.partBits, ordering: .sequentiallyConsistent)
                pthread_mutex_lock(sleepLock)
                pthread_cond_broadcast(wakeUp)
                pthread_mutex_unlock(sleepLock)
                runClaimedParts(generation: generation, parts: parts, body: pointer)
                var spins = 0
                while completedParts.load(ordering: .acquiring) < parts {
                    spins += 1
                    if spins & 1023 == 0 { sched_yield() }
                }
            }
        }
    }

    /// Claims and runs parts of step `generation` until none is left or the step is over.
    private func runClaimedParts(generation: Int, parts: Int, body: UnsafePointer<(Int) -> Void>) {
        var current = ticket.load(ordering: .acquiring)
        while current >> Self.partBits == generation, current & Self.partMask < parts {
            let (claimed, observed) = ticket.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiringAndReleasing)
            if claimed {
                body.pointee(current & Self.partMask)
                completedParts.add(1, ordering: .releasing)
                current = ticket.load(ordering: .acquiring)
            } else {
                current = observed
            }
        }
    }

    private func startWorkers(upTo count: Int) {
        while workerCount < count {
            var thread = pthread_t()
            // The generation before the step about to be published: a worker that reads it only once
            // running could otherwise take that step for one it has already seen, and miss it.
            let start = WorkerStart(pool: self, seen: ticket.load(ordering: .sequentiallyConsistent) >> Self.partBits)
            let context = Unmanaged.passRetained(start)
            let status = pthread_create(&thread, nil, { raw in
                let start = Unmanaged<WorkerStart>.fromOpaque(raw!).takeRetainedValue()
                start.pool.workerLoop(seen: start.seen)
            }, context.toOpaque())
            guard status == 0 else {
                context.release()
                return  // run with the workers there are
            }
            pthread_detach(thread)
            workerCount += 1
        }
    }

    private func workerLoop(seen initial: Int) -> Never {
        var seen = initial
        while true {
            var spins = 0
            var generation = ticket.load(ordering: .acquiring) >> Self.partBits
            while generation == seen {
                spins += 1
                if spins >= Self.spinLimit {
                    pthread_mutex_lock(sleepLock)
                    while ticket.load(ordering: .acquiring) >> Self.partBits == seen {
                        pthread_cond_wait(wakeUp, sleepLock)
                    }
                    pthread_mutex_unlock(sleepLock)
                    spins = 0
                }
                generation = ticket.load(ordering: .acquiring) >> Self.partBits
            }
            seen = generation
            // Read after seeing the generation; if the step is already over, the claims below fail.
            let parts = partCount.load(ordering: .sequentiallyConsistent)
            if let address = UnsafeRawPointer(bitPattern: bodyAddress.load(ordering: .sequentiallyConsistent)) {
                runClaimedParts(generation: generation, parts: parts,
                                body: address.assumingMemoryBound(to: ((Int) -> Void).self))
            }
        }
    }

    private func resetAfterFork() {
        workerCount = 0
        busy.store(false, ordering: .relaxed)
        pthread_mutex_init(sleepLock, nil)
        pthread_cond_init(wakeUp, nil)
    }
}

/// What a new worker thread starts from, passed through pthread_create's context pointer.
private final class WorkerStart {
    let pool: WorkerPool
    /// The last generation published before the worker was created.
    let seen: Int

    init(pool: WorkerPool, seen: Int) {
        self.pool = pool
        self.seen = seen
    }
}
