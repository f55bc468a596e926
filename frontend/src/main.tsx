import { render } from "preact";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { App } from "./views/App";
import { startRouter } from "./router";

startRouter();
const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(<App />, root);
}
