"""Reports generated from run folders only: `runfolder` reads a run into plain data, `boards`
and `claims` make the markdown tables, `plots` the PNGs, `render.render_report` writes it all."""
