//! Arithmetic example module: integers, floats, records, lists, variants and every WIT type.
easyrpc_guest::wit_bindgen::generate!({
    world: "easyrpc-modules:math/math",
    path: ["../../wit/guest", "wit"],
    runtime_path: "easyrpc_guest::wit_bindgen::rt",
});
easyrpc_guest::embed_wit!(include_str!("../wit/world.wit"));

use exports::easyrpc_modules::math::kinds::Everything;
use exports::easyrpc_modules::math::shapes::Shape;

struct Math;

impl Guest for Math {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    fn mul(a: f64, b: f64) -> f64 {
        a * b
    }
    fn div(a: i64, b: i64) -> Result<i64, String> {
        a.checked_div(b).ok_or_else(|| format!("cannot divide {a} by {b}"))
    }
    fn distance(a: Point, b: Point) -> f64 {
        ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
    }
    fn centroid(points: Vec<Point>) -> Option<Point> {
        if points.is_empty() {
            return None;
        }
        let n = points.len() as f64;
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), p| (sx + p.x, sy + p.y));
        Some(Point { x: sx / n, y: sy / n })
    }
    fn sum(xs: Vec<i64>) -> i64 {
        xs.iter().fold(0i64, |acc, x| acc.wrapping_add(*x))
    }
    fn scale(points: Vec<Point>, factor: f64) -> Vec<Point> {
        points.into_iter().map(|p| Point { x: p.x * factor, y: p.y * factor }).collect()
    }
}

fn area(s: &Shape) -> f64 {
    match s {
        Shape::Circle(r) => std::f64::consts::PI * r * r,
        Shape::Rect((w, h)) => w * h,
        Shape::Dot => 0.0,
    }
}

impl exports::easyrpc_modules::math::shapes::Guest for Math {
    fn area(s: Shape) -> f64 {
        area(&s)
    }
    fn largest(shapes: Vec<Shape>) -> Option<Shape> {
        shapes.into_iter().fold(None, |best: Option<Shape>, s| match best {
            Some(b) if area(&b) >= area(&s) => Some(b),
            _ => Some(s),
        })
    }
}

impl exports::easyrpc_modules::math::kinds::Guest for Math {
    fn echo_everything(e: Everything) -> Everything {
        e
    }
    fn echo_u64(x: u64) -> u64 {
        x
    }
    fn echo_s64(x: i64) -> i64 {
        x
    }
}

export!(Math);
