"""A tasks module with an app of its own, for hutch.testing's ``hutch_includes``."""

from hutch import Hutch

app = Hutch("included", broker="memory://included-module")


@app.task(name="included.double", bind=True)
def double(self, x):
    return {"value": 2 * x, "app": self.app.main}
