"""Write a notebook from a list of ("md"|"code"|"params", source) cells, stripped (no outputs).
Used by the kit's developers to keep notebooks tidy; notebooks are committed as .ipynb."""
import nbformat


def build(path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for n, (kind, src) in enumerate(cells):
        src = src.strip("\n")
        if kind == "md":
            c = nbformat.v4.new_markdown_cell(src)
        else:
            c = nbformat.v4.new_code_cell(src)
            if kind == "params":
                c.metadata["tags"] = ["parameters"]
        c["id"] = f"c{n:02d}"  # stable ids: no churn in diffs
        nb.cells.append(c)
    nbformat.write(nb, path)
