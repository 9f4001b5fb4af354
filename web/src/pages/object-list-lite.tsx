import type { ReactNode } from 'react';
import type { WebObject } from '../backend/types.ts';
import { bytes } from '../state.tsx';

/** Checkboxes (datasets) or radio buttons (config) over stored objects, one label each. */
export function ObjectListLite(props: { objects: WebObject[] | undefined; type: 'checkbox' | 'radio'; name: string; picked: string[]; onToggle(name: string): void; empty: ReactNode }) {
  if (!props.objects) return <p aria-busy="true">Loading…</p>;
  if (props.objects.length === 0) return <p className="hint">{props.empty}</p>;
  return (
    <ul className="choices">
      {props.objects.map((o) => {
        const id = `${props.name}-${o.name}`;
        return (
          <li key={o.key}>
            <input id={id} type={props.type} name={props.name} value={o.name} checked={props.picked.includes(o.name)} onChange={() => props.onToggle(o.name)} />
            <label htmlFor={id}>
              {o.name} <span className="hint">{bytes(o.sizeBytes)}</span>
            </label>
          </li>
        );
      })}
    </ul>
  );
}
