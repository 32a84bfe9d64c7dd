// PackedGemm: matrix products on pre-packed weights with swiftcam's own kernel (CGemmKernel):
// C (rows, n) = W (rows, depth) · B (depth, n), then bias, shortcut and ReLU as the tiles are
// stored. Cache blocking: a block of B (blockDepth, blockColumns) is packed into the part's
// scratch (L2) and each of its 48-column tiles (blockDepth x 48 = 24 KB, in L1) meets every
// weight panel of a block of rows (blockRows x blockDepth = 128 KB, L2). Threads claim blocks of
// columns; a narrow product packs all of B once and the threads claim blocks of rows.

import CGemmKernel
import Synchronization

/// What the product adds before storing C: bias per row and a residual laid out like C (both
/// positioned at C's first row and column, may be nil), then ReLU.
struct GemmEpilogue {
    var bias: UnsafePointer<Float>? = nil  // (rows)
    var residual: UnsafePointer<Float>? = nil  // (rows, n), rows residualStride apart
    var residualStride = 0
    var applyReLU = false

    /// The same epilogue for a product whose first column is `columns` further along.
    func advanced(columns: Int) -> GemmEpilogue {
        var moved = self
        moved.residual = residual.map { $0 + columns }
        return moved
    }

    /// The epilogue of the tile at `row`, `column`.
    @inline(__always)
    func at(row: Int, column: Int) -> swiftcam_gemm_epilogue {
        swiftcam_gemm_epilogue(
            bias: bias.map { $0 + row }, residual: residual.map { $0 + row * residualStride + column },
            residual_stride: residualStride, relu: applyReLU ? 1 : 0)
    }
}

enum PackedGemm {
    /// Depth (k) per block: a packed tile (blockDepth, 48) is 24 KB, half the L1 of these cores,
    /// beside the stream of weights (256 measured 3% slower at batch 1: the tile no longer fits).
    static let blockDepth = 128
    /// Columns per packed block of B: (blockDepth, blockColumns) = 120 KB, in L2 with the weights' block.
    static let blockColumns = 5 * GemmKernel.tileColumns
    /// Weight rows per block: (blockRows, blockDepth) = 128 KB of panels, in L2.
    static let blockRows = 256
    /// Products at most this wide (the small feature maps of the last stages) pack all of B once,
    /// shared by the threads, which then claim blocks of rows.
    static let sharedPackColumns = blockColumns

    /// Scratch floats one thread needs to pack its blocks of B.
    static let scratchPerPart = blockDepth * blockColumns

    /// Floats of all of B (depth, columns) packed in tiles, for a product that shares it.
    static func sharedPackCount(depth: Int, columns: Int) -> Int {
        depth * roundedUp(columns, to: GemmKernel.tileColumns)
    }

    /// Scratch floats a product of `depth` and up to `columns` columns needs on `parts` threads,
    /// plus room to start it on a cache line (see `alignedScratch`).
    static func scratchCount(parts: Int, depth: Int, columns: Int) -> Int {
        let perThread = parts * scratchPerPart
        let shared = columns <= sharedPackColumns ? sharedPackCount(depth: depth, columns: columns) : 0
        return max(perThread, shared) + 16
    }

    /// The part of `region` that starts on a 64-byte boundary (losing at most 15 floats).
    static func alignedScratch(_ region: UnsafeMutableBufferPointer<Float>) -> UnsafeMutableBufferPointer<Float> {
        guard let start = region.baseAddress else { return region }
        let skip = min(region.count, (16 - (Int(bitPattern: start) / 4) % 16) % 16)
        return UnsafeMutableBufferPointer(rebasing: region[skip...])
    }
}

@inline(__always)
private func roundedUp(_ value: Int, to multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }

/// `C (rows, n) = W · B` for group `group` of `weights`, then `epilogue`, split across threads.
/// B is (depth, n) with rows `ldb` apart, C has rows `ldc` apart. `scratch` holds
/// `PackedGemm.scratchCount(parts:depth:columns:)` floats (64-byte aligned); with less, fewer
/// threads work. Threads claim their work piece by piece (blocks of columns, or of rows for a
/// narrow product), so one that starts late or runs slower does not hold the others up; every
/// element of C is computed the same way whichever thread takes it.
func packedGemm(
    weights: PackedWeights, group: Int, n: Int,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GemmEpilogue = GemmEpilogue(),
    scratch: UnsafeMutableBufferPointer<Float>
) {
    let rows = weights.rows, depth = weights.depth
    let threads = partCount(cost: rows * n * depth, minimumCostPerPart: 1 << 20)
    if threads > 1, n <= PackedGemm.sharedPackColumns,
       scratch.count >= PackedGemm.sharedPackCount(depth: depth, columns: n) {
        packedGemmSharingB(weights: weights, group: group, n: n, b: b, ldb: ldb, c: c, ldc: ldc,
                           epilogue: epilogue, packed: scratch.baseAddress!, parts: threads)
        return
    }
    let parts = min(threads, max(1, scratch.count / PackedGemm.scratchPerPart))
    // Blocks of columns to claim: at least four per thread where the product is wide enough.
    let vectors = (n + GemmKernel.vectorColumns - 1) / GemmKernel.vectorColumns
    let claimVectors = parts == 1 ? vectors
        : max(1, min(PackedGemm.blockColumns / GemmKernel.vectorColumns, vectors / (4 * parts)))
    let claimColumns = claimVectors * GemmKernel.vectorColumns
    let claims = (n + claimColumns - 1) / claimColumns
    let nextClaim = Atomic<Int>(0)
    parallelFor(parts) { part in
        let partScratch = scratch.baseAddress! + part * PackedGemm.scratchPerPart
        while true {
            let claim = nextClaim.wrappingAdd(1, ordering: .relaxed).oldValue
            guard claim < claims else { return }
            let first = claim * claimColumns
            packedGemmPart(weights: weights, group: group, rows: 0..<rows, columns: first..<min(n, first + claimColumns),
                           b: b, ldb: ldb, c: c, ldc: ldc, epilogue: epilogue, scratch: partScratch)
        }
    }
}

/// A narrow product: all of B packed once into `packed` (depth block after depth block, each as
/// tiles of (block depth, 48)), then the threads claim blocks of rows.
private func packedGemmSharingB(
    weights: PackedWeights, group: Int, n: Int,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GemmEpilogue,
    packed: UnsafeMutablePointer<Float>,  // (depth, n rounded up to 48) as tiles per depth block
    parts: Int
) {
    let depth = weights.depth
    let paddedColumns = roundedUp(n, to: GemmKernel.tileColumns)
    let depthBlocks = (depth + PackedGemm.blockDepth - 1) / PackedGemm.blockDepth
    parallelFor(min(parts, depthBlocks)) { part in
        for block in chunk(part, of: min(parts, depthBlocks), count: depthBlocks) {
            let depthStart = block * PackedGemm.blockDepth
            swiftcam_gemm_pack_columns(b + depthStart * ldb, ldb, min(PackedGemm.blockDepth, depth - depthStart), n,
                                       packed + depthStart * paddedColumns)
        }
    }
    let panels = weights.panels
    let claimPanels = max(1, min(PackedGemm.blockRows / GemmKernel.panelRows, panels / (3 * parts)))
    let claims = (panels + claimPanels - 1) / claimPanels
    let nextClaim = Atomic<Int>(0)
    parallelFor(parts) { _ in
        while true {
            let claim = nextClaim.wrappingAdd(1, ordering: .relaxed).oldValue
            guard claim < claims else { return }
            let firstRow = claim * claimPanels * GemmKernel.panelRows
            let rows = firstRow..<min(weights.rows, firstRow + claimPanels * GemmKernel.panelRows)
            for depthStart in stride(from: 0, to: depth, by: PackedGemm.blockDepth) {
                multiplyBlock(
                    weights: weights, group: group, rows: rows, columnStart: 0, blockColumns: n,
                    tiles: packed + depthStart * paddedColumns, depthStart: depthStart, c: c, ldc: ldc,
                    epilogue: epilogue)
            }
        }
    }
}

/// One piece of work: rows `rows` (starting on a panel) and columns `columns` of C, packing each
/// block of B into `scratch` on the way.
private func packedGemmPart(
    weights: PackedWeights, group: Int, rows: Range<Int>, columns: Range<Int>,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GemmEpilogue,
    scratch: UnsafeMutablePointer<Float>  // (blockDepth, blockColumns) as tiles of (blockDepth, 48)
) {
    let depth = weights.depth
    for columnStart in stride(from: columns.lowerBound, to: columns.upperBound, by: PackedGemm.blockColumns) {
        let blockColumns = min(PackedGemm.blockColumns, columns.upperBound - columnStart)
        for depthStart in stride(from: 0, to: depth, by: PackedGemm.blockDepth) {
            let blockDepth = min(PackedGemm.blockDepth, depth - depthStart)
            swiftcam_gemm_pack_columns(b + depthStart * ldb + columnStart, ldb, blockDepth, blockColumns, scratch)
            multiplyBlock(
                weights: weights, group: group, rows: rows, columnStart: columnStart, blockColumns: blockColumns,
                tiles: scratch, depthStart: depthStart, c: c, ldc: ldc, epilogue: epilogue)
        }
    }
}

/// Rows `rows` x columns `columnStart..<columnStart + blockColumns` of C over the depth block at
/// `depthStart`, from that block of B packed at `tiles`; the epilogue with the last depth block.
@inline(__always)
private func multiplyBlock(
    weights: PackedWeights, group: Int, rows: Range<Int>, columnStart: Int, blockColumns: Int,
    tiles: UnsafePointer<Float>,  // (block depth, 48) per tile of the block's columns
    depthStart: Int, c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: GemmEpilogue
) {
    let panelRows = GemmKernel.panelRows, tileColumns = GemmKernel.tileColumns
    let blockDepth = min(PackedGemm.blockDepth, weights.depth - depthStart)
    let isLastBlock = depthStart + blockDepth == weights.depth
    let accumulate: Int32 = depthStart > 0 ? 1 : 0
    for rowStart in stride(from: rows.lowerBound, to: rows.upperBound, by: PackedGemm.blockRows) {
        let blockRows = min(PackedGemm.blockRows, rows.upperBound - rowStart)
        let panels = weights.panel(group: group, rowStart / panelRows, depthBlockAt: depthStart)
        let panelStride = blockDepth * panelRows
        for tileStart in stride(from: 0, to: blockColumns, by: tileColumns) {
            let tile = tiles + tileStart * blockDepth  // (blockDepth, 48)
            let column = columnStart + tileStart
            let tileWidth = min(tileColumns, blockColumns - tileStart)
            let output = c + rowStart * ldc + column
            if isLastBlock {
                var tileEpilogue = epilogue.at(row: rowStart, column: column)
                swiftcam_gemm_panels(panels, panelStride, tile, blockDepth, output, ldc, blockRows, tileWidth,
                                     accumulate, &tileEpilogue)
            } else {
                swiftcam_gemm_panels(panels, panelStride, tile, blockDepth, output, ldc, blockRows, tileWidth,
                                     accumulate, nil)
            }
        }
    }
}
