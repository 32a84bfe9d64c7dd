// PackedGemm: matrix products on pre-packed weights with swiftcam's own kernel (CGemmKernel):
// C (rows, n) = W (rows, depth) · B (depth, n), then bias, shortcut and ReLU as the tiles are
// stored. Cache blocking: a block of B (blockDepth, blockColumns) is packed into the part's
// scratch (L2) and each of its 48-column tiles (blockDepth x 48 = 48 KB, the size of L1) meets every weight
// panel of a block of rows (blockRows x blockDepth = 256 KB, L2). Threads split the columns or
// the rows, whichever splits the tiles more evenly.

import CGemmKernel

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
    /// Depth (k) per block: a packed tile (blockDepth, 48) is 48 KB, the L1 of these cores.
    static let blockDepth = 256
    /// Columns per packed block of B: (blockDepth, blockColumns) = 240 KB, in L2 with the weights' block.
    static let blockColumns = 5 * GemmKernel.tileColumns
    /// Weight rows per block: (blockRows, blockDepth) = 256 KB of panels, in L2.
    static let blockRows = 256

    /// Scratch floats one thread's part needs.
    static let scratchPerPart = blockDepth * blockColumns

    /// Scratch floats a product needs when split into `parts` threads, plus room to start it on a
    /// cache line (see `alignedScratch`).
    static func scratchCount(parts: Int) -> Int { parts * scratchPerPart + 16 }

    /// The part of `region` that starts on a 64-byte boundary (losing at most 15 floats).
    static func alignedScratch(_ region: UnsafeMutableBufferPointer<Float>) -> UnsafeMutableBufferPointer<Float> {
        guard let start = region.baseAddress else { return region }
        let skip = min(region.count, (16 - (Int(bitPattern: start) / 4) % 16) % 16)
        return UnsafeMutableBufferPointer(rebasing: region[skip...])
    }
}

/// `C (rows, n) = W · B` for group `group` of `weights`, then `epilogue`, split across threads.
/// B is (depth, n) with rows `ldb` apart, C has rows `ldc` apart. `scratch` holds
/// `PackedGemm.scratchCount(parts:)` floats for as many parts as may run (at least one),
/// 64-byte aligned.
func packedGemm(
    weights: PackedWeights, group: Int, n: Int,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GemmEpilogue = GemmEpilogue(),
    scratch: UnsafeMutableBufferPointer<Float>
) {
    let rows = weights.rows, depth = weights.depth
    let maximumParts = max(1, scratch.count / PackedGemm.scratchPerPart)
    let parts = min(maximumParts, partCount(cost: rows * n * depth, minimumCostPerPart: 1 << 20))
    let vectors = (n + GemmKernel.vectorColumns - 1) / GemmKernel.vectorColumns
    // Split the dimension whose units (vectors of 16 columns, panels of 8 rows) divide most
    // evenly; columns on a tie, since splitting rows packs B once per part.
    let splitColumns = imbalance(units: vectors, parts: parts) <= imbalance(units: weights.panels, parts: parts)
    parallelFor(parts) { part in
        let range = splitColumns
            ? chunk(part, of: parts, count: n, alignment: GemmKernel.vectorColumns)
            : chunk(part, of: parts, count: rows, alignment: GemmKernel.panelRows)
        guard !range.isEmpty else { return }
        packedGemmPart(
            weights: weights, group: group, rows: splitColumns ? 0..<rows : range,
            columns: splitColumns ? range : 0..<n, b: b, ldb: ldb, c: c, ldc: ldc, epilogue: epilogue,
            scratch: scratch.baseAddress! + part * PackedGemm.scratchPerPart)
    }
}

/// How much longer the largest of `parts` contiguous shares of `units` is than an even share.
private func imbalance(units: Int, parts: Int) -> Double {
    let perPart = (units + parts - 1) / parts
    return Double(perPart * parts) / Double(max(units, 1))
}

/// One thread's share: rows `rows` (starting on a panel) and columns `columns` of C.
private func packedGemmPart(
    weights: PackedWeights, group: Int, rows: Range<Int>, columns: Range<Int>,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    epilogue: GemmEpilogue,
    scratch: UnsafeMutablePointer<Float>  // (blockDepth, blockColumns) as tiles of (blockDepth, 48)
) {
    let depth = weights.depth
    let panelRows = GemmKernel.panelRows, tileColumns = GemmKernel.tileColumns
    for columnStart in stride(from: columns.lowerBound, to: columns.upperBound, by: PackedGemm.blockColumns) {
        let blockColumns = min(PackedGemm.blockColumns, columns.upperBound - columnStart)
        for depthStart in stride(from: 0, to: depth, by: PackedGemm.blockDepth) {
            let blockDepth = min(PackedGemm.blockDepth, depth - depthStart)
            let isLastBlock = depthStart + blockDepth == depth
            swiftcam_gemm_pack_columns(b + depthStart * ldb + columnStart, ldb, blockDepth, blockColumns, scratch)
            for rowStart in stride(from: rows.lowerBound, to: rows.upperBound, by: PackedGemm.blockRows) {
                let blockRows = min(PackedGemm.blockRows, rows.upperBound - rowStart)
                let panels = weights.panel(group: group, rowStart / panelRows, depthBlockAt: depthStart)
                let panelStride = blockDepth * panelRows
                for tileStart in stride(from: 0, to: blockColumns, by: tileColumns) {
                    let tile = scratch + tileStart * blockDepth  // (blockDepth, 48)
                    let column = columnStart + tileStart
                    let tileWidth = min(tileColumns, blockColumns - tileStart)
                    let output = c + rowStart * ldc + column
                    let accumulate: Int32 = depthStart > 0 ? 1 : 0
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
    }
}
