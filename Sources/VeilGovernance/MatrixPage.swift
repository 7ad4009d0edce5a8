import VeilConfig

/// The grant matrix as one self-contained HTML page (inline CSS, no scripts, no external
/// resources) for governance reviews: applications × data classes, expiring grants marked
/// and listed.
public enum MatrixPage {
    public static func html(_ matrix: GrantMatrix, catalog: Catalog, title: String) -> String {
        func esc(_ text: String) -> String {
            var out = ""
            for c in text {
                switch c {
                case "&": out += "&amp;"
                case "<": out += "&lt;"
                case ">": out += "&gt;"
                case "\"": out += "&quot;"
                default: out.append(c)
                }
            }
            return out
        }
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(esc(title))</title>
            <style>
            body { font-family: sans-serif; margin: 24px; color: #1b1b1b; }
            table { border-collapse: collapse; margin: 12px 0; }
            th, td { border: 1px solid #999; padding: 6px 10px; vertical-align: top; text-align: left; }
            th { background: #e8eef6; }
            .grant { margin: 2px 0; padding: 2px 6px; border-radius: 3px; }
            .encrypt { background: #dcefdc; }
            .decrypt { background: #dce6f5; }
            .expiring { background: #ffd966; font-weight: bold; }
            .expired { background: #f4b6b6; text-decoration: line-through; }
            .none { color: #999; }
            .meta { color: #555; font-size: 90%; }
            </style></head><body>
            <h1>\(esc(title))</h1>
            <p class="meta">Generated \(esc(matrix.now.description)). Grants expiring within \(matrix.warnWithin / 86_400) days are highlighted.</p>
            <table id="matrix"><thead><tr><th>application</th>
            """
        for name in matrix.dataClasses {
            let dataClass = catalog.dataClasses[name]!
            let kms = catalog.domains[dataClass.domain]?.kms.summary ?? "?"
            h += "<th>\(esc(name))<div class=\"meta\">key \(esc(dataClass.domain))/\(esc(dataClass.key))<br>\(esc(kms))</div></th>"
        }
        h += "</tr></thead><tbody>\n"
        for application in matrix.applications {
            let identity = catalog.applications[application]?.identity ?? application
            h += "<tr><th>\(esc(application))" + (identity == application ? "" : "<div class=\"meta\">identity \(esc(identity))</div>") + "</th>"
            for dataClass in matrix.dataClasses {
                let entries = matrix.cells[application]?[dataClass] ?? []
                if entries.isEmpty {
                    h += "<td class=\"none\">none</td>"
                    continue
                }
                h += "<td>"
                for entry in entries {
                    let classes = entry.state == .active ? entry.purpose.rawValue : "\(entry.purpose.rawValue) \(entry.state.rawValue)"
                    var text = entry.purpose.rawValue
                    if let expires = entry.expires { text += entry.state == .expired ? " (expired \(expires))" : " until \(expires)" }
                    h += "<div class=\"grant \(classes)\" title=\"approved by \(esc(entry.approvedBy))\">\(esc(text))</div>"
                }
                h += "</td>"
            }
            h += "</tr>\n"
        }
        h += "</tbody></table>\n<h2>Expiring and expired grants</h2>\n"
        let attention = matrix.attention
        if attention.isEmpty {
            h += "<p id=\"attention\">None.</p>\n"
        } else {
            h += "<table id=\"attention\"><thead><tr><th>application</th><th>data class</th><th>grant</th><th>key</th><th>expires</th><th>approved by</th></tr></thead><tbody>\n"
            for item in attention {
                h += "<tr class=\"\(item.entry.state.rawValue)\"><td>\(esc(item.application))</td><td>\(esc(item.dataClass))</td><td>\(item.entry.purpose.rawValue)</td>"
                h += "<td>\(esc(item.entry.key))</td><td>\(esc(item.entry.expires?.description ?? ""))</td><td>\(esc(item.entry.approvedBy))</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        h += "</body></html>\n"
        return h
    }
}
